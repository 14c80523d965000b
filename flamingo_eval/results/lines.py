"""Prediction lines (one JSON object per line of predictions.jsonl) as metric inputs.

A line holds everything its metric needs (``answer``, ``references``, ``label``, ``scores``, ``extra``),
so ``score``, ``compare`` and the runner's ``ci95`` rebuild exactly the items the run scored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flamingo_eval.metrics.base import MetricInput


def metric_input(line: Mapping[str, Any]) -> MetricInput:
    """The metric input of one prediction line (missing optional fields read as empty)."""
    scores = line.get("scores")
    return MetricInput(sample_id=line["sample_id"], answer=line.get("answer") or "",
                       references=tuple(line.get("references") or ()), label=line.get("label"),
                       scores=None if scores is None else tuple(scores), extra=line.get("extra") or {})
