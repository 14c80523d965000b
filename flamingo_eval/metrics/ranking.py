"""VisDial v1.0 retrieval metrics (Das et al. 2017; VisDial challenge evaluation).

Each round ranks 100 candidate answers by score (higher = better). Ties keep the option order: among
equal scores the lower option index ranks first (a stable sort), so ``rank = 1 + #(higher scores) +
#(equal scores at a lower index)``.

- R@k: share of rounds whose ground-truth option ranks <= k (k = 1, 5, 10), x100.
- mean rank: mean rank of the ground-truth option (not scaled).
- MRR: mean reciprocal rank, x100.
- NDCG: over densely annotated rounds only (``extra["gt_relevance"]``, 100 floats); with k = #options
  whose relevance > 0, DCG@k = sum_i rel_i / log2(i + 2) over the top-k predicted options (i from 0),
  divided by the DCG@k of the relevances sorted in decreasing order; x100.

Headline: NDCG (over the annotated rounds) when any round has dense relevance, otherwise MRR; ``extras``
always holds ``mrr`` (and ``ndcg`` plus ``ndcg_rounds`` when defined), so the record shows which it is.
``per_sample`` holds each round's reciprocal rank x100.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flamingo_eval.errors import UserError
from flamingo_eval.metrics.base import MetricInput, MetricResult
from flamingo_eval.registry import METRICS

RECALL_KS = (1, 5, 10)


def gt_rank(scores: Sequence[float], index: int) -> int:
    """1-based rank of option ``index`` when sorting ``scores`` descending, ties by option order."""
    arr = np.asarray(scores, dtype=np.float64)
    target = arr[index]
    return 1 + int(np.sum(arr > target)) + int(np.sum(arr[:index] == target))


def predicted_order(scores: Sequence[float]) -> np.ndarray:
    """Option indices from best to worst; equal scores keep their option order."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def ndcg(scores: Sequence[float], relevance: Sequence[float]) -> float:
    """NDCG@k (0-1) of one round; k = number of options with relevance > 0.

    Args:
        scores: Predicted score per option.
        relevance: Dense relevance per option (same length).

    Returns:
        DCG@k of the predicted order over DCG@k of the ideal order; 0.0 when no option is relevant.
    """
    rel = np.asarray(relevance, dtype=np.float64)
    if len(rel) != len(scores):
        raise UserError(f"visdial: {len(scores)} option scores but {len(rel)} relevance values")
    k = int(np.sum(rel > 0))
    if k == 0:
        return 0.0
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    dcg = float(np.sum(rel[predicted_order(scores)[:k]] * discounts))
    ideal = float(np.sum(np.sort(rel)[::-1][:k] * discounts))
    return dcg / ideal


def _check(item: MetricInput) -> tuple[float, ...]:
    if item.scores is None or item.label is None:
        raise UserError(f"visdial: sample '{item.sample_id}' needs option scores and the gt index")
    if not 0 <= item.label < len(item.scores):
        raise UserError(f"visdial: sample '{item.sample_id}' gt index {item.label} is out of range")
    return item.scores


def retrieval_summary(ranks: Sequence[int]) -> dict[str, float]:
    """R@1/5/10 (x100), mean rank and MRR (x100) from 1-based ground-truth ranks."""
    arr = np.asarray(ranks, dtype=np.float64)
    if arr.size == 0:
        return {}
    out = {f"r@{k}": 100.0 * float(np.mean(arr <= k)) for k in RECALL_KS}
    out["mean_rank"] = float(np.mean(arr))
    out["mrr"] = 100.0 * float(np.mean(1.0 / arr))
    return out


class VisDial:
    """The ``visdial`` metric; see the module docstring for definitions and the headline rule."""

    name = "visdial"
    corpus_level = True

    def __call__(self, items: list[MetricInput]) -> MetricResult:
        ranks: list[int] = []
        ndcgs: list[float] = []
        for item in items:
            scores = _check(item)
            ranks.append(gt_rank(scores, item.label))  # type: ignore[arg-type]
            relevance = item.extra.get("gt_relevance")
            if relevance is not None:
                ndcgs.append(ndcg(scores, relevance))
        extras = retrieval_summary(ranks)
        if ndcgs:
            extras["ndcg"] = 100.0 * float(np.mean(ndcgs))
            extras["ndcg_rounds"] = float(len(ndcgs))
        value = extras.get("ndcg", extras.get("mrr", 0.0))
        per_sample = tuple(100.0 / r for r in ranks)
        return MetricResult(value=value, per_sample=per_sample, extras=extras)


@METRICS.register("visdial")
def visdial() -> VisDial:
    """Factory for the ``visdial`` metric (no arguments)."""
    return VisDial()
