"""The run record (record.json) as dataclasses, serialised in one place (:meth:`RunRecord.to_json`).

The runner fills a :class:`RunRecord` while it runs and the run store writes ``to_json()`` after every
trial; readers (leaderboard, compare, score) read the JSON through ``records.validate_record``, which
requires only the fields they use, so records of older versions stay readable. docs/results.md documents
every field; a test holds the table and these dataclasses equal.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from flamingo_eval.results.records import SCHEMA_VERSION


def _plain(value: Any) -> Any:
    """Dataclasses to JSON objects in field order, recursively (lists and dicts kept as they are)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass
class ShotsResult:
    """One shots setting: its trials and their statistics (``metrics/stats.py``)."""

    shots: int
    sampler: str
    n: int
    """Eval samples."""
    seeds: list[int]
    trials: list[dict[str, Any]] = field(default_factory=list)
    """Per trial: seed, value, extras, n, skipped, skipped_ids, skip_reasons, dropped_demos, seconds."""
    mean: float | None = None
    std: float | None = None
    std_ddof1: float | None = None
    ci95: list[float] | None = None
    """Bootstrap of the metric's own headline over samples; set when the setting's last trial is scored."""
    ci95_resamples: int | None = None
    ci95_method: str | None = None
    """What ``ci95`` resamples: ``bootstrap: samples`` or ``bootstrap: samples x trials`` (two-level)."""


@dataclass
class RunRecord:
    """Everything ``record.json`` holds, in file order."""

    schema_version: int
    run_id: str
    created: str
    benchmark: dict[str, Any]
    model: dict[str, Any]
    config: dict[str, Any]
    provenance: dict[str, Any]
    results: list[ShotsResult] = field(default_factory=list)
    throughput: dict[str, Any] = field(default_factory=dict)
    config_hash: str | None = None
    status: str = "running"
    execution: dict[str, Any] = field(default_factory=dict)
    media: dict[str, Any] | None = None
    """Video decoding counters of this process (clips, frames, short clips); absent for image-only runs."""

    def to_json(self) -> dict[str, Any]:
        """The JSON object of record.json (the one serialisation; ``media`` only when there is some)."""
        out: dict[str, Any] = _plain(self)
        if out.get("media") is None:
            out.pop("media", None)
        return out


def new_run_record(**fields: Any) -> RunRecord:
    """A record of the current schema version."""
    return RunRecord(schema_version=SCHEMA_VERSION, **fields)
