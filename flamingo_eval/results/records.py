"""Run records on disk: load, validate, find, and write them atomically.

A run directory holds ``record.json`` (one JSON object, schema in docs/results.md) and
``predictions.jsonl`` (one JSON object per scored sample). Validation checks only what the results
tools rely on; every problem is reported as one :class:`~flamingo_eval.errors.UserError` line that
names the file and the field (``results[0].trials[1].value``).
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from flamingo_eval.errors import UserError

SCHEMA_VERSION = 1
"""Newest record schema this package reads and the runner writes."""

RECORD_FILE = "record.json"
PREDICTIONS_FILE = "predictions.jsonl"

_NUMBER = (int, float)


def _fail(path: Path | str, field: str, problem: str) -> UserError:
    return UserError(f"{path}: field '{field}': {problem}")


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _need(d: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, path: Path | str) -> Any:
    """Return ``d[key]`` after checking that it exists and has the expected JSON type."""
    field = f"{where}.{key}" if where else key
    if key not in d:
        raise _fail(path, field, "missing")
    value = d[key]
    bad_bool = isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))
    if not isinstance(value, kind) or bad_bool:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _fail(path, field, f"expected {names}, got {_type_name(value)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not _finite(value):
        got = value if isinstance(value, float) else f"an integer of {len(str(abs(value)))} digits"
        raise _fail(path, field, f"expected a finite number, got {got}")
    return value


def _finite(x: int | float) -> bool:
    try:
        return math.isfinite(float(x))
    except OverflowError:  # an int beyond the float range
        return False


def _validate_trial(t: Any, where: str, path: Path | str) -> None:
    if not isinstance(t, dict):
        raise _fail(path, where, f"expected object, got {_type_name(t)}")
    _need(t, "seed", int, where, path)
    _need(t, "value", (*_NUMBER, type(None)), where, path)  # null: unscored (submission file only)
    _check_ci(t, where, path)  # trials carried no interval before results[].ci95 existed; tolerated


def _check_ci(obj: dict[str, Any], where: str, path: Path | str) -> None:
    ci = obj.get("ci95")
    if ci is not None and (
        not isinstance(ci, list) or len(ci) != 2
        or not all(isinstance(x, _NUMBER) and not isinstance(x, bool) and _finite(x) for x in ci)
        or ci[0] > ci[1]
    ):
        raise _fail(path, f"{where}.ci95", "expected [low, high] (finite numbers, low <= high) or null")


def _validate_result(r: Any, where: str, path: Path | str) -> None:
    if not isinstance(r, dict):
        raise _fail(path, where, f"expected object, got {_type_name(r)}")
    shots = _need(r, "shots", int, where, path)
    if shots < 0:
        raise _fail(path, f"{where}.shots", f"expected >= 0, got {shots}")
    trials = _need(r, "trials", list, where, path)
    if not trials:
        raise _fail(path, f"{where}.trials", "empty (a result needs at least one trial)")
    seeds = []
    for j, t in enumerate(trials):
        _validate_trial(t, f"{where}.trials[{j}]", path)
        seeds.append(t["seed"])
    if len(set(seeds)) != len(seeds):
        raise _fail(path, f"{where}.trials", f"duplicate trial seeds {sorted(seeds)}")
    unscored = any(t["value"] is None for t in trials)
    _need(r, "mean", (*_NUMBER, type(None)) if unscored else _NUMBER, where, path)
    _check_ci(r, where, path)


def validate_record(d: Any, path: Path | str = "<record>") -> dict[str, Any]:
    """Check that a parsed record has the fields the results tools read.

    Args:
        d: The parsed ``record.json`` object.
        path: File name used in the error message.

    Returns:
        ``d`` unchanged, for chaining.

    Raises:
        UserError: One line naming ``path`` and the first bad field.
    """
    if not isinstance(d, dict):
        raise _fail(path, "<root>", f"expected a JSON object, got {_type_name(d)}")
    version = _need(d, "schema_version", int, "", path)
    if version > SCHEMA_VERSION:
        raise _fail(path, "schema_version", f"{version} is newer than this flamingo-eval reads "
                    f"({SCHEMA_VERSION}); upgrade flamingo-eval")
    if version < 1:
        raise _fail(path, "schema_version", f"expected >= 1, got {version}")
    _need(d, "run_id", str, "", path)
    created = _need(d, "created", str, "", path)
    try:
        datetime.fromisoformat(created)
    except ValueError:
        raise _fail(path, "created", f"not an ISO-8601 timestamp: {created!r}") from None
    bench = _need(d, "benchmark", dict, "", path)
    for key in ("id", "version", "split", "metric"):
        _need(bench, key, str, "benchmark", path)
    model = _need(d, "model", dict, "", path)
    _need(model, "id", str, "model", path)
    for key in ("name", "fingerprint"):
        if model.get(key) is not None:
            _need(model, key, str, "model", path)
    results = _need(d, "results", list, "", path)
    shots_seen: set[tuple[int, str]] = set()
    for i, r in enumerate(results):
        _validate_result(r, f"results[{i}]", path)
        setting = (int(r["shots"]), str(r.get("sampler", "random")))
        if setting in shots_seen:
            raise _fail(path, f"results[{i}].shots", f"{setting[0]}-shot ({setting[1]}) listed twice")
        shots_seen.add(setting)
    return d


def load_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and validate a record from a run directory or a ``record.json`` path.

    The returned dict gains one private key, ``_path`` (the file it was read from).

    Raises:
        UserError: The file is missing, not JSON, or fails :func:`validate_record`.
    """
    p = Path(path)
    if p.is_dir():
        p = p / RECORD_FILE
    if not p.is_file():
        raise UserError(f"{p}: no run record here (expected a run directory or a {RECORD_FILE} path)")
    d = parse_json(read_text(p, "run record"), str(p))
    validate_record(d, p)
    d["_path"] = str(p)
    return d


def find_records(root: str | os.PathLike[str]) -> list[Path]:
    """All ``record.json`` files under ``root`` (recursively), sorted by path.

    Raises:
        UserError: ``root`` does not exist.
    """
    r = Path(root)
    if r.is_file():
        return [r]
    if not r.is_dir():
        raise UserError(f"{r}: results directory not found")
    return sorted(p for p in r.rglob(RECORD_FILE) if p.is_file())


def load_records(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Load and validate every record under ``root`` (see :func:`find_records`)."""
    return [load_record(p) for p in find_records(root)]


def parse_json(text: str, where: str) -> Any:
    """``json.loads`` with every failure as one UserError line naming ``where``.

    Besides syntax errors this covers nesting too deep for the parser (``RecursionError``) and integers
    too long to convert (``ValueError``).
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{where}: not valid JSON (line {e.lineno} column {e.colno}: {e.msg})") from None
    except RecursionError:
        raise UserError(f"{where}: JSON nested too deeply to read; this is not a file flamingo-eval wrote") from None
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise UserError(f"{where}: unreadable JSON value ({e})") from None


def read_text(path: Path, what: str = "file") -> str:
    """A UTF-8 text file (a leading byte-order mark is ignored), or one UserError line naming it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a {what}") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte {data[e.start]:#04x}); "
                        "re-save the file as UTF-8") from None


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of a JSON-lines file.

    Raises:
        UserError: Unreadable file, or a line that is not a JSON object (names the file and line).
    """
    out = []
    for lineno, line in enumerate(read_text(path, "predictions file").split("\n"), 1):
        if not line.strip():
            continue
        obj = parse_json(line, f"{path}:{lineno}")
        if not isinstance(obj, dict):
            raise UserError(f"{path}:{lineno}: expected a JSON object, got {_type_name(obj)}")
        out.append((lineno, obj))
    return out


def iter_predictions(run_dir: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the prediction lines of a run, skipping blank lines.

    Raises:
        UserError: The file is missing or a line is not a JSON object with the pairing keys.
    """
    p = Path(run_dir)
    if p.name == RECORD_FILE or p.is_file():
        p = p.parent
    p = p / PREDICTIONS_FILE
    if not p.is_file():
        raise UserError(f"{p}: predictions file not found (paired comparison needs it)")
    for lineno, obj in read_jsonl(p):
        for key, kind in (("shots", int), ("seed", int), ("sample_id", str)):
            if not isinstance(obj.get(key), kind) or isinstance(obj.get(key), bool):
                raise UserError(f"{p}:{lineno}: field '{key}': expected {kind.__name__}, "
                                f"got {_type_name(obj.get(key))}")
        for key, kinds in (("score", (*_NUMBER, type(None))), ("demo_ids", (list, type(None))),
                           ("answer", (str, type(None))), ("references", (list, type(None)))):
            value = obj.get(key)
            if not isinstance(value, kinds) or isinstance(value, bool) or (
                    isinstance(value, float) and not math.isfinite(value)):
                raise UserError(f"{p}:{lineno}: field '{key}': unexpected {_type_name(value)} {value!r:.40}")
        yield obj


def load_predictions(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All prediction lines of a run (a run directory or its ``record.json`` path).

    A resumed run may hold the same (shots, seed, sample_id) twice; the later line wins.
    """
    latest: dict[tuple[int, int, str], dict[str, Any]] = {}
    for obj in iter_predictions(run_dir):
        latest[(obj["shots"], obj["seed"], obj["sample_id"])] = obj
    return list(latest.values())


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> None:
    """Write JSON so that readers see either the old file or the complete new one.

    Writes a temporary file in the same directory, fsyncs it, then ``os.replace``s it over ``path``.
    """
    write_text_atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False) + "\n")


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Atomically replace ``path`` with ``text`` (UTF-8); see :func:`write_json_atomic`."""
    data = text.encode("utf-8")
    write_atomic(path, lambda f: f.write(data))


def write_error(path: Path, e: OSError) -> UserError:
    """One actionable line for a failed write (disk full, read-only, permissions)."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return UserError(f"cannot write {path}: no space left on device; free some space and re-run the same "
                         "command to resume (everything written so far is kept)")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return UserError(f"cannot write {path}: {e.strerror or 'permission denied'}; choose a writable --output")
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        return UserError(f"cannot write {path}: a path component is a file, not a directory; choose another --output")
    return UserError(f"cannot write {path}: {e.strerror or e}")



def write_atomic(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Atomically replace ``path`` with what ``write`` writes to a binary file object.

    The temporary file sits in the target's directory and gets the permissions a plain ``open`` would
    (0o666 less the umask); it is fsynced, renamed over ``path``, and the rename made durable where the
    platform allows it. Readers see the old file or the complete new one, never a part. A failed write
    (disk full, read-only, permissions) is a one-line :class:`UserError` naming ``path``.
    """
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as e:
        raise write_error(p, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, p)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise write_error(p, e) from None
        raise
    try:
        dir_fd = os.open(p.parent, os.O_RDONLY)
    except OSError:
        return p
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return p


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it; restored at once
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once at import: setting it per write would race with threads creating files
