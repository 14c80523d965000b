"""Run-directory state: config hash, fresh / resume / refuse, per-rank part files, merge and finalise.

Layout of a run directory while it runs::

    record.json                 rewritten atomically after every trial (status: running | complete)
    predictions.jsonl           the scored lines of every finished trial, canonical order (appended per trial)
    partial/predictions.index.json   end offset of each trial in predictions.jsonl (results/predstream.py)
    partial/state.json          config hash + weights fingerprint of the run that owns this directory
    partial/s<shots>-t<trial>.r<rank>.jsonl   append-only: one JSON line per evaluated (or skipped) sample,
                                flushed per batch, fsynced every FSYNC_EVERY_S; a torn last line is ignored
    partial/s<shots>-t<trial>.scored.jsonl    that trial's lines in eval-split order with per-sample scores

When the last trial is scored, ``record.json`` gets ``status: complete`` and ``partial/`` is removed.
How the directory is made, recognised and tidied crash-safely: ``results/rundir.py``; the caller holds
its lock (``results/lock.py``) for the whole run.

Re-running the same command resumes: samples present in a part file are not evaluated again, and the
finished files are byte-identical to an uninterrupted run's because the scored files are always rebuilt
from the part files in the canonical sample order (however the work was split over restarts or ranks) and
the runner redoes a cut chunk whole (the model sees the same batches; other ranks or batch sizes may
resolve a genuine near-tie differently: docs/protocol.md). A directory holding a run of another
configuration is refused unless ``--overwrite``.

The config hash covers the resolved config minus fields that cannot change results (:data:`RUN_ONLY`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flamingo_eval import faults
from flamingo_eval.distributed import Dist
from flamingo_eval.errors import UserError
from flamingo_eval.results.lines import TrialOutput, metric_input
from flamingo_eval.results.predstream import INDEX_FILE, append_trial
from flamingo_eval.results.records import PREDICTIONS_FILE, RECORD_FILE, write_json_atomic
from flamingo_eval.results.run_record import RunRecord
from flamingo_eval.results.rundir import (
    PARTIAL_DIR,
    STATE_FILE,
    check_output_dir,
    clean_stale,
    create_partial,
    inside,
    read_json,
    remove_dir,
    tidy_complete,
    writing,
)

__all__ = ["PARTIAL_DIR", "RUN_ONLY", "STATE_FILE", "PartSink", "RunStore", "check_output_dir", "config_hash",
           "tidy_complete", "writing"]

RUN_ONLY: dict[str, tuple[str, ...]] = {
    "run": ("output", "resume", "overwrite", "batch_size", "threads", "rices_cache_dir", "bootstrap_trials"),
    "model": ("batch_size", "latent_cache_mb", "latent_cache_dir", "device_map", "devices", "max_memory"),
}
"""Config fields excluded from the config hash: where things go and how fast, never what comes out (and
``run.bootstrap_trials``, newer than most runs: which interval a record carries, named by its ``ci95_method``).

LM batch size and thread count can change float results in the last bits (kernel choice), which can flip
a genuine near-tie; they are recorded, and kept out of the hash so a run can resume on another machine or
with a smaller batch. ``model.vision_batch_size`` and ``run.rices_batch_size`` are NOT here: they fix the
shape of every vision forward, so an image's latents and RICES features are the same bits whatever it is
encoded with (docs/protocol.md, "Batch size and float noise")."""


def config_hash(cfg: Any) -> str:
    """sha256 of the resolved config minus :data:`RUN_ONLY` (and the vocab size a random LM derives)."""
    from flamingo_eval.config import to_dict

    data = to_dict(cfg)
    for section, keys in RUN_ONLY.items():
        for k in keys:
            data[section].pop(k, None)
    lm = data["model"]["lm"]
    if lm.get("source") == "random":  # build_model fills it from the tokenizer (already in the config)
        lm.get("config", {}).pop("vocab_size", None)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()[:16]


_LINE = json.JSONEncoder(ensure_ascii=False).encode
"""``json.dumps(obj, ensure_ascii=False)`` (the same encoder, same bytes) without building an encoder per
call: a run encodes every line twice (part file, scored file), ~0.4 M lines per VQAv2 trial."""


def _count_lines(path: Path) -> int:
    """Complete entries in a part file without decoding them: newline-terminated lines that look like one
    JSON object (a torn tail has no newline; a block of NULs after a machine crash does not start with
    ``{``). Only the throughput count uses it; what is evaluated again is decided by :func:`_complete_lines`."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    return sum(1 for raw in data.split(b"\n")[:-1] if raw[:1] == b"{" and raw[-1:] == b"}")


def _complete_lines(path: Path) -> list[dict[str, Any]]:
    """Entries of a part file: newline-terminated lines that parse (a torn tail is ignored)."""
    return [d for d, _ in _complete_entries(path)]


def _complete_entries(path: Path) -> list[tuple[dict[str, Any], str]]:
    """(entry, its text) per complete line of a part file (see :func:`_complete_lines`)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for raw in data.split(b"\n")[:-1]:
        try:
            text = raw.decode("utf-8")
            d = json.loads(text)
        except ValueError:
            continue  # a block of NULs after a crash: that sample is simply evaluated again
        if isinstance(d, dict):
            out.append((d, text))
    return out


_SCORE_NULL = ', "score": null'
_PART_HEAD = '{"p": {'


def scored_line(line: dict[str, Any], part_text: str | None, score: Any) -> str:
    """``_LINE({**line, "score": score})``: the scored line, spliced from the line's part-file text when safe.

    A run would otherwise encode every line twice (part file, scored file): ~80 % of the harness's write
    cost at full size. ``part_text`` is ``{"p": BODY}`` as :class:`PartSink` wrote it (``line`` is BODY
    decoded), and BODY is ``_LINE(line)``: this encoder's output decodes and re-encodes to the same text.
    The first ``, "score": null`` in BODY is ``line``'s own ``score`` key when no ``{`` comes before it:
    a bare ``"`` after ``, `` opens a string (inside strings quotes are escaped), ``"score":`` is then a
    key, and with no object opened before it, a key of BODY itself. Replacing that null with the score's
    JSON is then the same bytes as encoding the merged dict (unit test with tricky values); anything else
    (a ``{`` before it, even inside a string; no ``score`` key; another writer's spacing) is encoded whole.
    """
    if part_text is not None and part_text.startswith(_PART_HEAD) and part_text.endswith("}}"):
        i = part_text.find(_SCORE_NULL)
        if i > 0 and part_text.find("{", len(_PART_HEAD), i) == -1:
            return f'{part_text[6:i]}, "score": {_score_json(score)}{part_text[i + len(_SCORE_NULL):-1]}'
    return _LINE({**line, "score": score})


def _score_json(score: Any) -> str:
    """``_LINE(score)``, memoised: a metric's per-sample scores take few distinct values (VQA: 0, 1/3, ...)."""
    if isinstance(score, float) and score == 0.0:  # -0.0 == 0.0 would share a cache entry but encodes as "-0.0"
        return _LINE(score)
    try:
        return _score_json_cached(score)
    except TypeError:  # unhashable: not a number
        return _LINE(score)


@functools.lru_cache(maxsize=4096, typed=True)  # typed: True, 1 and 1.0 are equal keys but encode differently
def _score_json_cached(score: Any) -> str:
    return _LINE(score)


def _repair_tail(path: Path) -> None:
    """Cut an unterminated last line (a write killed half-way) so appends start on a fresh line."""
    if not path.exists():
        return
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        pos, keep = size, 0
        while pos > 0:
            step = min(1 << 16, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                keep = pos + nl + 1
                break
        if keep != size:
            f.truncate(keep)


FSYNC_EVERY_S = 2.0
"""Part files are flushed per batch (a killed process loses nothing flushed: the kernel keeps it) and
fsynced at most this often (a machine crash loses at most this much work; an fsync per batch cost the
stub-fast scale bench's smoke run 7.4 % of its time: docs/performance.md)."""


class PartSink:
    """Appends one rank's entries for one (shots, trial), flushed per batch, fsynced every :data:`FSYNC_EVERY_S`."""

    def __init__(self, path: Path, tags: dict[str, int]) -> None:
        self.path, self.tags, self._ready = path, tags, False
        self._synced = -FSYNC_EVERY_S  # the first batch of a trial is always fsynced

    def __call__(self, lines: list[dict[str, Any]], skipped: Sequence[dict[str, Any]] = ()) -> None:
        text = "".join([_LINE({"p": {**self.tags, **ln}}) + "\n" for ln in lines])
        text += "".join([_LINE({"skip": dict(s)}) + "\n" for s in skipped])
        with writing(self.path):
            if not self._ready:
                _repair_tail(self.path)
                self._ready = True
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                if time.monotonic() - self._synced >= FSYNC_EVERY_S:
                    os.fsync(f.fileno())
                    self._synced = time.monotonic()


class RunStore:
    """The run directory of one evaluation; every rank holds one, rank 0 alone merges and scores."""

    def __init__(self, out_dir: Path, chash: str, dist: Dist, previous: dict[str, Any] | None = None,
                 complete: dict[str, Any] | None = None) -> None:
        self.out_dir, self.chash, self.dist = out_dir, chash, dist
        self.previous, self.complete = previous, complete
        self.partial = out_dir / PARTIAL_DIR
        self.done_at_open: dict[tuple[int, int], int] = {}

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, out_dir: Path, cfg: Any, fingerprint: str, dist: Dist) -> RunStore:
        """Decide fresh / resume / complete on rank 0, prepare the directory, tell every rank."""
        chash = config_hash(cfg)
        answer: tuple[str, str] = ("", "")
        if dist.is_main:
            try:
                answer = (cls._prepare(out_dir, chash, fingerprint, cfg.run.resume, cfg.run.overwrite), "")
            except UserError as e:
                answer = ("", str(e))
        mode, err = dist.broadcast(answer)
        if err:
            raise UserError(err)
        store = cls(out_dir, chash, dist)
        if dist.is_main and mode == "resume":
            store._snapshot_done()  # before the broadcast below: no rank has evaluated anything yet
        if dist.is_main and mode in ("resume", "complete"):
            rec = read_json(out_dir / RECORD_FILE)
            store.previous = rec
            store.complete = rec if mode == "complete" else None
        store.complete = dist.broadcast(store.complete) if mode == "complete" else None
        return store

    @staticmethod
    def _prepare(out_dir: Path, chash: str, fingerprint: str, resume: bool, overwrite: bool) -> str:
        mode = check_output_dir(out_dir, chash, resume, overwrite)
        partial = inside(out_dir, PARTIAL_DIR)
        clean_stale(out_dir)
        if mode == "overwrite":
            for name in (RECORD_FILE, PREDICTIONS_FILE):
                with writing(out_dir / name):
                    inside(out_dir, name).unlink(missing_ok=True)
            for sub in sorted(out_dir.glob("submission*.json")):
                inside(out_dir, sub.name).unlink()
            remove_dir(out_dir, partial)
            mode = "fresh"
        if mode == "fresh":
            create_partial(out_dir, {"config_hash": chash, "fingerprint": fingerprint})
        elif mode == "resume":
            state = read_json(partial / STATE_FILE) or {}
            if state.get("fingerprint") not in (None, fingerprint):
                raise UserError(f"{out_dir}: the model weights changed since this partial run began (fingerprint "
                                f"{state.get('fingerprint')}, now {fingerprint}); pass --overwrite to start over")
            write_json_atomic(partial / STATE_FILE, {**state, "resumes": int(state.get("resumes", 0)) + 1})
        return mode

    def _snapshot_done(self) -> None:
        """Count, per (shots, trial), the samples earlier processes evaluated (for this run's throughput)."""
        for path in self.partial.glob("s*-t*.r*.jsonl"):
            m = re.match(r"s(\d+)-t(\d+)\.r\d+\.jsonl$", path.name)
            if m:
                key = (int(m.group(1)), int(m.group(2)))
                self.done_at_open[key] = self.done_at_open.get(key, 0) + _count_lines(path)

    def evaluated_here(self, shots: int, trial: int, n: int) -> int:
        """How many of the ``n`` samples of (shots, trial) this process (job) evaluated (rank 0)."""
        return max(n - self.done_at_open.get((shots, trial), 0), 0)

    # -- evaluating (every rank) -----------------------------------------------------------------
    def part_path(self, shots: int, trial: int, rank: int) -> Path:
        return inside(self.out_dir, f"{PARTIAL_DIR}/s{shots}-t{trial}.r{rank}.jsonl")

    def entries(self, shots: int, trial: int) -> dict[str, dict[str, Any]]:
        """Sample id -> its entry (``{"p": line}`` or ``{"skip": {...}}``) over every rank's part file."""
        return {sid: e for sid, (e, _) in self._entries_text(shots, trial).items()}

    def _entries_text(self, shots: int, trial: int) -> dict[str, tuple[dict[str, Any], str]]:
        """Sample id -> (its entry, the entry's part-file text); the first one wins, as in :meth:`entries`."""
        found: dict[str, tuple[dict[str, Any], str]] = {}
        for path in sorted(self.partial.glob(f"s{shots}-t{trial}.r*.jsonl")):
            for e, text in _complete_entries(path):
                body = e.get("p") or e.get("skip")
                if isinstance(body, dict) and "sample_id" in body:
                    found.setdefault(str(body["sample_id"]), (e, text))
        return found

    def pending(self, samples: Sequence[Any], shots: int, trial: int) -> tuple[list[Any], int]:
        """(this rank's samples still to evaluate, how many of its samples are already done)."""
        from flamingo_eval.distributed import shard

        mine = shard(samples, self.dist)
        done = self.entries(shots, trial)
        todo = [s for s in mine if s.id not in done]
        return todo, len(mine) - len(todo)

    def sink(self, shots: int, trial: int, seed: int) -> PartSink:
        return PartSink(self.part_path(shots, trial, self.dist.rank), {"shots": shots, "trial": trial, "seed": seed})

    # -- merging and scoring (rank 0) ------------------------------------------------------------
    def scored_path(self, shots: int, trial: int) -> Path:
        return inside(self.out_dir, f"{PARTIAL_DIR}/s{shots}-t{trial}.scored.jsonl")

    def previous_trial(self, shots: int, trial: int, seed: int) -> dict[str, Any] | None:
        """The record entry of a trial a previous (killed) process already scored, if any."""
        if not self.previous or not self.scored_path(shots, trial).exists():
            return None
        for entry in self.previous.get("results", []):
            trials = entry.get("trials", [])
            if entry.get("shots") == shots and len(trials) > trial and trials[trial].get("seed") == seed:
                return dict(trials[trial])
        return None

    def collect(self, task: Any, shots: int, trial: int) -> TrialOutput:
        """Every rank's lines for (shots, trial) as one ``TrialOutput`` in eval-split order; the metric
        inputs are rebuilt from the lines themselves (``results/lines.py``), nothing from the runner."""
        found = self._entries_text(shots, trial)
        missing = [s.id for s in task.eval_samples if s.id not in found]
        if missing:
            raise UserError(f"{self.out_dir}: {len(missing)} samples of {shots}-shot trial {trial} have no "
                            f"prediction (first: {missing[0]}); a rank stopped early? re-run to resume")
        res = TrialOutput()
        for s in task.eval_samples:
            e, text = found[s.id]
            if "skip" in e:
                res.skipped.append({"sample_id": s.id, "error": e["skip"].get("error", "")})
                res.dropped += int(e["skip"].get("dropped_demos", 0))
                continue
            line = e["p"]
            res.items.append(metric_input(line))
            res.lines.append(line)
            res.texts.append(text)
            res.dropped += int(line.get("dropped_demos") or 0)
        return res

    def save_scores(self, out: Any, per_sample: Sequence[Any], shots: int, trial: int,
                    order: Sequence[tuple[int, int]]) -> None:
        """Write the trial's scored lines, then append them to predictions.jsonl (trials scored in ``order``)."""
        scores = {item.sample_id: sc for item, sc in zip(out.items, per_sample)}
        texts = out.texts if len(out.texts) == len(out.lines) else [None] * len(out.lines)
        text = "".join([scored_line(ln, raw, scores.get(ln["sample_id"], ln.get("score"))) + "\n"
                        for ln, raw in zip(out.lines, texts)])
        path = self.scored_path(shots, trial)
        with writing(path):
            from flamingo_eval.results.records import write_text_atomic

            write_text_atomic(path, text)
        out = self.out_dir / PREDICTIONS_FILE
        with writing(out):  # appended once, O(this trial): results/predstream.py
            append_trial(out, inside(self.out_dir, f"{PARTIAL_DIR}/{INDEX_FILE}"), (shots, trial), text, order,
                         lambda k: self.scored_path(*k))

    def start_record(self, record: RunRecord) -> RunRecord:
        """Stamp ``record`` with the config hash; a resumed run keeps its original id and creation time."""
        prev = self.previous or {}
        for key in ("run_id", "created"):
            if key in prev:
                setattr(record, key, prev[key])
        resumes = int((read_json(self.partial / STATE_FILE) or {}).get("resumes", 0))
        record.config_hash = self.chash
        record.status = "running"
        record.execution = {"world_size": self.dist.world_size, "resumes": resumes}
        return record

    def write_record(self, record: RunRecord) -> None:
        """Rewrite record.json atomically (``RunRecord.to_json``: the one serialisation)."""
        write_json_atomic(self.out_dir / RECORD_FILE, record.to_json())

    def finish(self, record: RunRecord) -> None:
        """Mark the record complete, then drop the partial state and stale temporary files (rank 0)."""
        record.status = "complete"
        self.write_record(record)
        faults.crash_point("final")
        tidy_complete(self.out_dir)


