"""``predictions.jsonl`` written by appending each scored trial once, with a crash-safe index.

The finished file is the scored lines of every (shots, trial) in the run's canonical order, one JSON
line per sample. Rebuilding it from every scored trial after each trial made the I/O of a run grow with
the square of its trial count; here each trial's text is appended once (flushed and fsynced) and its end
offset recorded in ``partial/predictions.index.json`` (written atomically *after* the append)::

    {"version": 1, "trials": [[shots, trial, end_offset], ...]}   # a prefix of the run order

A process killed between the append and the index update leaves bytes past the last indexed offset:
the next append truncates the file back to the offset of the trial it continues from, so resuming
costs O(new lines) and the finished file is byte-identical to an uninterrupted run's. An index that does
not describe the file (missing, unreadable, another order, the file shorter than it says) is never
trusted: the file is then rebuilt once from the per-trial scored files, as the old writer always did.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from flamingo_eval import faults
from flamingo_eval.results.records import write_json_atomic

INDEX_FILE = "predictions.index.json"
Key = tuple[int, int]


def read_index(path: Path) -> list[tuple[int, int, int]]:
    """The index entries ``(shots, trial, end)``; ``[]`` when absent or malformed (then rebuilt)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = [(int(s), int(t), int(e)) for s, t, e in data["trials"]]
    except (OSError, ValueError, TypeError, KeyError):
        return []
    return rows if data.get("version") == 1 else []


def _trusted(rows: list[tuple[int, int, int]], order: Sequence[Key], size: int) -> list[tuple[int, int, int]]:
    """The longest prefix of ``rows`` that follows ``order`` with growing offsets inside the file."""
    good: list[tuple[int, int, int]] = []
    last = 0
    for (s, t, end), key in zip(rows, order):
        if (s, t) != tuple(key) or end < last or end > size:
            break
        good.append((s, t, end))
        last = end
    return good


def append_trial(out: Path, index: Path, key: Key, text: str, order: Sequence[Key],
                 scored: Callable[[Key], Path]) -> None:
    """Make ``out`` hold exactly the trials of ``order`` up to and including ``key``, appending only what
    is new.

    Args:
        out: ``predictions.jsonl``.
        index: its index file (in ``partial/``).
        key: the (shots, trial) just scored; ``text`` is its scored lines.
        order: every (shots, trial) of the run in canonical order.
        scored: where the scored lines of an earlier trial are, for trials the index does not cover
            (a directory written by an older version, or an index lost in a crash).
    """
    pos = list(map(tuple, order)).index(tuple(key))
    size = out.stat().st_size if out.exists() else 0
    rows = _trusted(read_index(index), order[:pos], size)
    start = rows[-1][2] if rows else 0
    out.touch()
    with open(out, "r+b") as f:
        f.truncate(start)  # bytes of an append whose index update a kill cut off
        f.seek(start)
        for k in order[len(rows):pos]:  # earlier trials the index does not cover: their scored files
            p = scored(tuple(k))  # type: ignore[arg-type]
            if p.exists():
                f.write(p.read_bytes())
            rows.append((k[0], k[1], f.tell()))
        f.write(text.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
        rows.append((key[0], key[1], f.tell()))
    faults.crash_point("predictions")
    write_json_atomic(index, {"version": 1, "trials": [list(r) for r in rows]})
