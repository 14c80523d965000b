"""The metric contract: a metric turns scored items into a headline value on a 0-100 scale.

Metrics are registered in ``flamingo_eval.registry.METRICS`` under a name used by benchmark cards
(``metric: {name: vqa_accuracy, args: {variant: openflamingo}}``); the registered object is a factory
called with the card's ``args`` that returns a ``Metric``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class MetricInput:
    """One scored item, built by the runner from a Sample and the model output."""

    sample_id: str
    answer: str
    """Extracted answer (generation) or the top-ranked candidate (rank tasks)."""
    references: tuple[str, ...] = ()
    """Annotator answers / reference captions / label strings."""
    label: int | None = None
    """Index of the correct candidate (classification, VisDial gt_index, HatefulMemes 0/1)."""
    scores: tuple[float, ...] | None = None
    """Per-candidate scores (higher = better) for rank tasks."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Task extras, e.g. VisDial ``gt_relevance`` (100 floats) for NDCG."""


@dataclass(frozen=True)
class MetricResult:
    value: float
    """Headline value, 0-100, unrounded."""
    per_sample: tuple[float | None, ...]
    """0-100 per item, aligned with the inputs; None where only a corpus value exists (CIDEr, AUC)."""
    extras: Mapping[str, float] = field(default_factory=dict)
    """Secondary values (top5, bleu4, mrr, ...), 0-100 unless the name says otherwise (e.g. mean_rank)."""


class Metric(Protocol):
    name: str
    corpus_level: bool
    """True when the headline is not the mean of per-sample scores (CIDEr, ROC-AUC, NDCG...)."""

    def __call__(self, items: list[MetricInput]) -> MetricResult: ...
