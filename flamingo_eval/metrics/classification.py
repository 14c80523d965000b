"""Close-ended classification metrics: top-k accuracy (ImageNet) and ROC-AUC (HatefulMemes).

Both read ``MetricInput.scores`` (one score per candidate, higher = better) and ``MetricInput.label``.
Top-k ranks candidates like ``ranking.gt_rank``: ties keep candidate order (lower index first).
ROC-AUC scores each item with p(yes) = softmax over the two class scores ``[no, yes]``, as OpenFlamingo
does for HatefulMemes; a single score is used as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from flamingo_eval.errors import UserError
from flamingo_eval.metrics.base import MetricInput, MetricResult
from flamingo_eval.metrics.ranking import gt_rank
from flamingo_eval.registry import METRICS


def _scores_and_label(metric: str, item: MetricInput) -> tuple[tuple[float, ...], int]:
    if item.scores is None or item.label is None:
        raise UserError(f"{metric}: sample '{item.sample_id}' needs candidate scores and a label")
    if not 0 <= item.label < len(item.scores):
        raise UserError(f"{metric}: sample '{item.sample_id}' label {item.label} is out of range")
    return item.scores, item.label


class AccuracyTopK:
    """The ``accuracy_topk`` metric: ``extras["top{k}"]`` for each k; headline top-1 accuracy, or with
    ``headline: mean`` the mean of the ``top{k}`` values (Flamingo's Kinetics figure: (top-1 + top-5) / 2)."""

    name = "accuracy_topk"
    corpus_level = False

    def __init__(self, k: Sequence[int] = (1, 5), headline: str = "top1") -> None:
        """Create the metric.

        Args:
            k: Cut-offs reported in ``extras``.
            headline: ``top1`` (default) or ``mean`` (the mean of the ``top{k}`` extras).
        """
        if any(int(x) < 1 for x in k):
            raise UserError(f"accuracy_topk: k must be >= 1, got {list(k)}")
        if headline not in ("top1", "mean"):
            raise UserError(f"accuracy_topk: headline must be top1 or mean, got '{headline}'")
        self.k = tuple(int(x) for x in k)
        self.headline = headline

    def __call__(self, items: list[MetricInput]) -> MetricResult:
        ranks = [gt_rank(*_scores_and_label(self.name, item)) for item in items]
        n = max(len(ranks), 1)
        per_sample = tuple(100.0 if r == 1 else 0.0 for r in ranks)
        extras = {f"top{k}": 100.0 * sum(r <= k for r in ranks) / n for k in self.k}
        if self.headline == "mean":  # per sample: the mean of its top-k hits, so the mean of them is the headline
            per_sample = tuple(100.0 * sum(r <= k for k in self.k) / len(self.k) for r in ranks)
        return MetricResult(value=sum(per_sample) / n, per_sample=per_sample, extras=extras)


def p_yes(scores: Sequence[float], positive: int = 1) -> float:
    """Softmax probability of class ``positive`` over two class scores (e.g. log-probs of no/yes).

    A single score is returned unchanged (already a probability or a decision score).
    """
    if len(scores) == 1:
        return float(scores[0])
    if len(scores) != 2:
        raise UserError(f"roc_auc: expected 2 class scores [no, yes], got {len(scores)}")
    other = scores[1 - positive]
    # softmax(s)[positive] = 1 / (1 + exp(s_other - s_positive)), stable for large gaps.
    gap = other - scores[positive]
    if gap > 0:
        e = math.exp(-gap)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(gap))


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """ROC-AUC (0-1) with sklearn ``roc_auc_score``.

    Raises:
        UserError: when only one class is present (AUC is undefined).
    """
    from sklearn.metrics import roc_auc_score

    if len(set(labels)) < 2:
        raise UserError(
            "roc_auc: the labels hold a single class, so ROC-AUC is undefined; score a split with both classes"
        )
    return float(roc_auc_score(list(labels), list(scores)))


class RocAuc:
    """The ``roc_auc`` metric: ROC-AUC x100 of p(yes) against 0/1 labels; extras: accuracy (argmax)."""

    name = "roc_auc"
    corpus_level = True

    def __init__(self, positive: int = 1) -> None:
        """Create the metric.

        Args:
            positive: Index of the positive class among the two class scores (``[no, yes]`` -> 1).
        """
        if positive not in (0, 1):
            raise UserError(f"roc_auc: positive must be 0 or 1, got {positive}")
        self.positive = positive

    def __call__(self, items: list[MetricInput]) -> MetricResult:
        labels, probs = [], []
        for item in items:
            if item.scores is None or item.label not in (0, 1):
                raise UserError(f"roc_auc: sample '{item.sample_id}' needs class scores and a 0/1 label")
            labels.append(int(item.label))  # type: ignore[arg-type]
            probs.append(p_yes(item.scores, self.positive))
        value = 100.0 * roc_auc(labels, probs)
        hits = [(p > 0.5) == (y == 1) for p, y in zip(probs, labels)]
        extras = {"accuracy": 100.0 * sum(hits) / len(hits)}
        return MetricResult(value=value, per_sample=tuple(None for _ in items), extras=extras)


@METRICS.register("accuracy_topk")
def accuracy_topk(k: Sequence[int] = (1, 5), headline: str = "top1") -> AccuracyTopK:
    """Factory for the ``accuracy_topk`` metric (card args: ``k``, default [1, 5]; ``headline``)."""
    return AccuracyTopK(k=k, headline=headline)


@METRICS.register("roc_auc")
def roc_auc_metric(positive: int = 1) -> RocAuc:
    """Factory for the ``roc_auc`` metric (card arg: ``positive``, default 1 = ``yes``)."""
    return RocAuc(positive=positive)
