"""The prediction line (one JSON object of predictions.jsonl), a trial's output, and their metric inputs.

This module owns the line: the runner builds it here from a sample and what the task's request kind made
of the model's output (:func:`prediction`, ``request_kinds.Answer``), the run store merges and scores it,
and ``score``, ``compare`` and a record's ``ci95`` rebuild the metric input from it (:func:`metric_input`).
It imports neither the runner nor the store. A line holds everything its metric needs (``answer``,
``references``, ``label``, ``scores``, ``extra``), so the items rebuilt from a file are exactly those the
run scored.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flamingo_eval.metrics.base import MetricInput
from flamingo_eval.request_kinds import Answer
from flamingo_eval.types import InterleavedPrompt, Sample, media_name


def prompt_hash(p: InterleavedPrompt) -> str:
    """The prompt text and its media's file names (not their folders: the same run on another machine,
    or a data root mounted elsewhere, gives the same hash); a video adds its segment and frame sampling."""
    h = hashlib.sha256(p.text.encode())
    for m in p.media:
        h.update(b"\0" + media_name(m).encode())
    return "sha256:" + h.hexdigest()[:16]


@dataclass(frozen=True)
class PredictionLine:
    """One line of predictions.jsonl without its (shots, trial, seed) tags, in file key order."""

    sample_id: str
    demo_ids: list[str]
    """The demos actually shown, in prompt order."""
    prompt_hash: str
    raw_output: str
    """Generated text, or the JSON-encoded candidate scores (6 decimals) for rank tasks."""
    answer: str
    """Extracted answer, or the top-ranked candidate."""
    score: float | None
    """Per-sample score 0-100; filled when the trial is scored; None for corpus metrics."""
    references: list[str]
    label: int | None
    scores: list[float] | None
    """Candidate scores for rank tasks."""
    extra: dict[str, Any] = field(default_factory=dict)
    """The sample fields its metric reads (``Adapter.metric_fields``, e.g. VisDial ``gt_relevance``)."""
    dropped_demos: int = 0

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to the part and predictions files (the one serialisation)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass
class TrialOutput:
    """One (shots, trial) in eval-split order: the lines, their metric inputs, the skipped samples."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    items: list[MetricInput] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    """``{sample_id, error}`` per sample skipped (too long, or a bad image with ``on_bad_sample=skip``)."""
    dropped: int = 0
    """Demos dropped to fit the context, summed over the trial's samples."""
    texts: list[str] = field(default_factory=list)
    """Each line's part-file text (``{"p": line}``) when read back from one (``RunStore.collect``): the
    scored line is spliced from it instead of encoding the line again (``results/store.scored_line``)."""


def prediction(s: Sample, p: InterleavedPrompt, answer: Answer, *, metric_fields: Sequence[str]
               ) -> tuple[dict[str, Any], MetricInput]:
    """The line and the metric input of sample ``s`` shown prompt ``p``, from what its request kind made of the
    model's output.

    Args:
        s: The eval sample.
        p: Its prompt (demo ids, dropped demos, hash).
        answer: Raw output, answer and candidate scores (``RequestKind.answer``).
        metric_fields: Sample fields the metric reads, copied into ``extra``.
    """
    extra = {k: v for k, v in s.fields.items() if k in metric_fields}
    extra.update(s.fields.get("metric_extra") or {})  # per-sample values a metric needs (type, RareAct labels)
    scores = answer.scores
    item = MetricInput(sample_id=s.id, answer=answer.answer, references=s.references, label=s.label, scores=scores,
                       extra=extra)
    line = PredictionLine(sample_id=s.id, demo_ids=list(p.demo_ids), prompt_hash=prompt_hash(p),
                          raw_output=answer.raw_output, answer=answer.answer, score=None, references=list(s.references),
                          label=s.label, scores=list(scores) if scores is not None else None, extra=extra,
                          dropped_demos=p.dropped_demos)
    return line.to_json(), item


def metric_input(line: Mapping[str, Any]) -> MetricInput:
    """The metric input of one prediction line (missing optional fields read as empty)."""
    scores = line.get("scores")
    return MetricInput(sample_id=line["sample_id"], answer=line.get("answer") or "",
                       references=tuple(line.get("references") or ()), label=line.get("label"),
                       scores=None if scores is None else tuple(scores), extra=line.get("extra") or {})
