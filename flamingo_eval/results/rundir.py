"""The run directory on disk: what it holds (fresh / resume / complete / refuse), made and tidied crash-safely.

``partial/`` appears atomically together with its ``state.json``: both are made in a temporary
``.partial-*.tmp`` directory that is renamed into place, so a kill at start-up leaves either nothing of
ours or a resumable run. A directory holding no evaluated sample (killed at start-up, or an empty
``partial/`` an older version left) is ours to replace. ``partial/`` is deleted by renaming it to a
``.partial-*.trash`` name first, so a kill half-way never leaves a half-deleted state. Temporary files
of interrupted atomic writes (``.record.json.*.tmp`` ...) are removed at start and at the end. Callers
hold the directory's lock (``results/lock.py``) while they change anything here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flamingo_eval import faults
from flamingo_eval.errors import UserError
from flamingo_eval.results.records import PREDICTIONS_FILE, RECORD_FILE, write_error, write_json_atomic

__all__ = ["PARTIAL_DIR", "STATE_FILE", "check_output_dir", "clean_stale", "create_partial", "holds_work", "inside",
           "read_json", "remove_dir", "tidy_complete", "writing"]

PARTIAL_DIR = "partial"
STATE_FILE = "state.json"
STALE = re.compile(r"^\.(record\.json|predictions\.jsonl|submission[^/]*\.json)\..+\.tmp$|^\.partial-.+\.(tmp|trash)$")
"""Names in the run directory that only an interrupted atomic write or set-up leaves behind."""


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an ``OSError`` raised while writing ``path`` into a one-line :class:`UserError`."""
    try:
        yield
    except OSError as e:
        raise write_error(path, e) from None


def inside(out_dir: Path, name: str) -> Path:
    """``out_dir / name``, refusing anything that resolves outside ``out_dir`` (symlinks, ``..``)."""
    p = out_dir / name
    if not p.resolve().is_relative_to(out_dir.resolve()):
        raise UserError(f"{p} resolves outside the output directory {out_dir}; refusing to write there")
    return p


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at ``path``, or None when it is missing or unreadable."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def check_output_dir(out_dir: Path, chash: str, resume: bool, overwrite: bool) -> str:
    """What to do with ``out_dir``: ``fresh`` | ``resume`` | ``complete`` | ``overwrite`` (read-only).

    Raises:
        UserError: the path is not a directory, or holds a run of another config (or a partial run
            with ``resume`` off) and ``overwrite`` is not set.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--output {out_dir} is a file, not a directory; choose another --output")
    state = read_json(out_dir / PARTIAL_DIR / STATE_FILE)
    record_path, preds = out_dir / RECORD_FILE, out_dir / PREDICTIONS_FILE
    ours = state is not None or record_path.exists() or preds.exists() or (out_dir / PARTIAL_DIR).exists()
    if overwrite:
        return "overwrite" if ours else "fresh"
    if not record_path.exists() and not preds.exists() and not holds_work(out_dir / PARTIAL_DIR):
        # Nothing evaluated yet (killed at start-up, or an empty partial/): nothing to lose by starting over.
        if state is not None and state.get("config_hash") == chash and resume:
            return "resume"
        return "overwrite" if ours else "fresh"
    hint = "pass --overwrite to replace it, or choose another --output"
    if state is not None:
        if state.get("config_hash") != chash:
            raise UserError(f"{out_dir} holds a partial run of a different configuration (config hash "
                            f"{state.get('config_hash')}, this run {chash}); {hint}")
        rec = read_json(record_path)
        if rec is not None and rec.get("config_hash") == chash and rec.get("status") == "complete":
            return "complete" if resume else _already(out_dir)  # killed after the last write: only tidy up
        if not resume:
            raise UserError(f"{out_dir} holds a partial run of this configuration; drop --no-resume to continue "
                            "it, or pass --overwrite to start over")
        return "resume"
    if record_path.exists():
        rec = read_json(record_path)
        if rec is None or rec.get("config_hash") != chash:
            got = rec.get("config_hash") if rec else "unreadable"
            raise UserError(f"{out_dir} already holds a run record of a different configuration (config hash "
                            f"{got}, this run {chash}); {hint}")
        if rec.get("status") != "complete":
            raise UserError(f"{out_dir} holds an unfinished record without its partial/ state; {hint}")
        return "complete" if resume else _already(out_dir)
    if preds.exists() or (out_dir / PARTIAL_DIR).exists():
        raise UserError(f"{out_dir} holds predictions but no run state of this tool; {hint}")
    return "fresh"


def holds_work(partial: Path) -> bool:
    """Whether ``partial`` holds any evaluated sample (a non-empty part or scored file)."""
    try:
        return any(p.stat().st_size > 0 for p in partial.glob("*.jsonl") if not p.name.startswith("."))
    except OSError:
        return True  # unreadable: treat as work, never delete it silently


def clean_stale(out_dir: Path) -> None:
    """Remove what interrupted atomic writes and set-ups left (see :data:`STALE`); needs the lock."""
    for d in (out_dir, out_dir / PARTIAL_DIR):
        if not d.is_dir() or d.is_symlink():
            continue
        for p in d.iterdir():
            if STALE.match(p.name) or (d.name == PARTIAL_DIR and p.name.startswith(".") and p.name.endswith(".tmp")):
                with writing(p):
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)


def _already(out_dir: Path) -> str:
    raise UserError(f"{out_dir} already holds a complete run of this configuration; pass --overwrite to redo it")


def create_partial(out_dir: Path, state: dict[str, Any]) -> None:
    """Make ``partial/`` with its ``state.json`` in one step: built as a temporary directory, then renamed."""
    with writing(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".partial-", suffix=".tmp", dir=out_dir))
    try:
        faults.crash_point("startup")
        write_json_atomic(tmp / STATE_FILE, state)
        with writing(out_dir / PARTIAL_DIR):
            os.replace(tmp, inside(out_dir, PARTIAL_DIR))  # replaces an empty partial/ left by a crash
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(out_dir)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_dir(out_dir: Path, path: Path) -> None:
    """Delete ``path`` (inside ``out_dir``) so that a kill half-way leaves no half-deleted directory: it is
    first renamed to a ``.partial-*.trash`` name that :func:`clean_stale` removes later."""
    if not path.exists() and not path.is_symlink():
        return
    trash = out_dir / f".partial-{os.getpid()}-{os.urandom(4).hex()}.trash"
    with writing(path):
        os.replace(path, trash)
        if trash.is_symlink():
            trash.unlink()
        else:
            shutil.rmtree(trash)


def tidy_complete(out_dir: Path) -> None:
    """A complete run directory keeps only its results: drop ``partial/`` and stale temporary files."""
    remove_dir(out_dir, inside(out_dir, PARTIAL_DIR))
    clean_stale(out_dir)
