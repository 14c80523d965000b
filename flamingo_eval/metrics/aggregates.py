"""Each metric's headline as a function of resample counts, vectorised: what the bootstrap resamples.

A bootstrap resample of ``m`` scored items is a count vector ``c`` (how often each item was drawn), and
every metric's value on the resample is a function of the multiset, i.e. of ``c``. An *aggregate* maps a
count matrix ``(rows, m)`` to the headline on each row, NaN where the metric is undefined (ROC-AUC of one
class, no item drawn). :func:`aggregate_for` picks, for a metric and its items:

* a fast path of the metric (``FAST_PATHS``, by metric name): mean of types (``accuracy_by_type``),
  NDCG/MRR (``visdial``), weighted Mann-Whitney (``roc_auc``), weighted mWAP (``rareact_mwap``,
  ``aggregate_rareact.py``), CIDEr-D with the document frequencies of each resample
  (``cider``, ``aggregate_cider.py``);
* else, when the headline is the mean of per-sample scores (``corpus_level`` False), the weighted mean;
* else the generic path: the metric itself recomputed on the drawn items (exact for any metric, slow).

One documented approximation (:func:`approximation`): ``cider`` over more than :data:`FIXED_DF_ABOVE` items
resamples its per-image scores with the document frequencies of the whole split held fixed; the record's
``ci95_method`` then says so.

A fast path is only used after it reproduced the metric's own value on all items and on one resample
(:func:`_agrees`), so a metric that changes what it computes falls back to the generic path instead of
yielding the interval of another statistic. The statistics (draws, intervals) are in ``stats.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from flamingo_eval.errors import UserError
from flamingo_eval.metrics.base import Metric, MetricInput, MetricResult

Aggregate = Callable[[np.ndarray], np.ndarray]
"""Count matrix ``(rows, items)`` -> headline per row (metric scale), NaN where undefined."""
CHECK_SEED = 20_261_208
"""Seed of the one resample on which a fast path is checked against the metric itself."""
CHECK_SIZE = 1000
"""Items drawn for that check (fewer than all on large splits: one cheap metric call)."""
TOLERANCE = 1e-6
"""Largest difference (metric scale, 0-100) between a fast path and the metric: float summation order only."""
FIXED_DF_ABOVE = 10_000
"""Above this many items a ``cider`` interval holds the document frequencies at the whole split's: the exact
path's cost grows with n-grams x resamples (89 s at 20,000 images, docs/performance.md), and caption splits
are at most a few thousand images (COCO Karpathy test 5,000, VATEX test 6,000)."""


def approximation(metric: Metric, n_items: int) -> str | None:
    """What a bootstrap of ``metric`` over ``n_items`` items holds fixed, when it does not recompute the whole
    headline per resample (``ci95_method`` names it); None for the exact bootstrap."""
    if getattr(metric, "name", "") == "cider" and n_items > FIXED_DF_ABOVE:
        return f"CIDEr-D document frequencies of the whole split (over {FIXED_DF_ABOVE:,} items)"
    return None


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def mean_aggregate(scores: np.ndarray) -> Aggregate:
    """The weighted mean of per-sample ``scores`` (NaN for a row drawing none of the items)."""
    return lambda counts: _ratio(counts @ scores, counts.sum(axis=1))


def expand(items: Sequence[MetricInput], counts: np.ndarray) -> list[MetricInput]:
    """The resample as a list: item ``j`` repeated ``counts[j]`` times, in item order."""
    return [items[int(j)] for j in np.repeat(np.arange(len(items)), counts.astype(np.int64))]


def _value_or_nan(metric: Metric, items: list[MetricInput]) -> float:
    if not items:
        return math.nan
    try:
        return float(metric(items).value)
    except UserError:
        return math.nan


def generic_aggregate(metric: Metric, items: Sequence[MetricInput]) -> Aggregate:
    """The metric recomputed on every resample's items (exact for any metric; one metric call a row)."""
    return lambda counts: np.array([_value_or_nan(metric, expand(items, row)) for row in counts])


def by_type_aggregate(metric: Any, items: Sequence[MetricInput], result: MetricResult) -> Aggregate | None:
    """``accuracy_by_type`` with ``headline: mean_of_types``: mean over the drawn types of their accuracy
    (the overall accuracy when no drawn item has a type); None for the overall headline (a plain mean)."""
    if getattr(metric, "headline", None) != "mean_of_types":
        return None
    hits = np.array(result.per_sample, dtype=np.float64)
    merge = dict(getattr(metric, "merge", None) or {})  # renamed types (NExT-QA: TP counted as TN)
    types = [merge.get(t, t) for t in (str(i.extra.get("type", "")) for i in items)]
    named = sorted({t for t in types if t})
    onehot = np.zeros((len(types), len(named)))
    for j, name in enumerate(named):
        onehot[:, j] = [t == name for t in types]

    def agg(counts: np.ndarray) -> np.ndarray:
        n_type = counts @ onehot
        acc = _ratio(counts @ (onehot * hits[:, None]), n_type)
        with np.errstate(invalid="ignore"):
            drawn = (n_type > 0).sum(axis=1)
            mean_types = np.where(n_type > 0, acc, 0.0).sum(axis=1) / np.where(drawn > 0, drawn, 1)
        return np.where(drawn > 0, mean_types, _ratio(counts @ hits, counts.sum(axis=1)))

    return agg


def visdial_aggregate(metric: Any, items: Sequence[MetricInput], result: MetricResult) -> Aggregate:
    """VisDial's headline: NDCG over the drawn densely annotated rounds, MRR when none is drawn."""
    from flamingo_eval.metrics.ranking import ndcg

    rr = np.array(result.per_sample, dtype=np.float64)
    ann = np.array([i.extra.get("gt_relevance") is not None for i in items], dtype=np.float64)
    nd = np.array([100.0 * ndcg(i.scores, i.extra["gt_relevance"]) if a else 0.0  # type: ignore[arg-type]
                   for i, a in zip(items, ann)])

    def agg(counts: np.ndarray) -> np.ndarray:
        n_ann = counts @ ann
        return np.where(n_ann > 0, _ratio(counts @ nd, n_ann), _ratio(counts @ rr, counts.sum(axis=1)))

    return agg


def weighted_auc(pos_w: np.ndarray, neg_w: np.ndarray) -> np.ndarray:
    """ROC-AUC (0-1) per row from positive / negative weights ``(rows, groups)`` of tie groups in ascending
    score order: P(positive scores above negative) + P(tie) / 2, as sklearn's trapezoidal ROC-AUC."""
    below = np.cumsum(neg_w, axis=1) - neg_w
    return _ratio((pos_w * (below + 0.5 * neg_w)).sum(axis=1), pos_w.sum(axis=1) * neg_w.sum(axis=1))


def roc_auc_aggregate(metric: Any, items: Sequence[MetricInput], result: MetricResult) -> Aggregate:
    """``roc_auc``: the weighted Mann-Whitney statistic over tie groups of p(yes) (x100)."""
    from flamingo_eval.metrics.classification import p_yes

    probs = np.array([p_yes(i.scores, metric.positive) for i in items])  # type: ignore[arg-type]
    labels = np.array([i.label == 1 for i in items], dtype=np.float64)
    order = np.argsort(probs, kind="stable")
    sorted_p = probs[order]
    starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])

    def agg(counts: np.ndarray) -> np.ndarray:
        c = counts[:, order]
        pos = np.add.reduceat(c * labels[order], starts, axis=1)
        neg = np.add.reduceat(c * (1.0 - labels[order]), starts, axis=1)
        return 100.0 * weighted_auc(pos, neg)

    return agg


def _rareact(metric: Any, items: Sequence[MetricInput], result: MetricResult) -> Aggregate:
    from flamingo_eval.metrics.aggregate_rareact import rareact_aggregate

    return rareact_aggregate(items)


def _cider(metric: Any, items: Sequence[MetricInput], result: MetricResult) -> Aggregate:
    from flamingo_eval.metrics.aggregate_cider import cider_aggregate

    return cider_aggregate(metric, items)


FAST_PATHS: dict[str, Callable[[Any, Sequence[MetricInput], MetricResult], Aggregate | None]] = {
    "accuracy_by_type": by_type_aggregate, "visdial": visdial_aggregate, "roc_auc": roc_auc_aggregate,
    "rareact_mwap": _rareact, "cider": _cider,
}
"""Metric name -> builder of its vectorised aggregate (None: the metric's plain mean applies)."""


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= TOLERANCE


def _agrees(agg: Aggregate, metric: Metric, items: Sequence[MetricInput], value: float) -> bool:
    """Whether ``agg`` gives the metric's own value on all items and on one seeded draw of (at most)
    :data:`CHECK_SIZE` of them with replacement."""
    ones = np.ones((1, len(items)))
    drawn = np.random.default_rng(CHECK_SEED).integers(0, len(items), min(len(items), CHECK_SIZE))
    row = np.bincount(drawn, minlength=len(items)).astype(np.float64)[None, :]
    resampled = _value_or_nan(metric, expand(items, row[0]))
    return _close(float(agg(ones)[0]), value) and _close(float(agg(row)[0]), resampled)


def aggregate_for(metric: Metric, items: Sequence[MetricInput], result: MetricResult | None = None,
                  method: list[str] | None = None) -> Aggregate:
    """The aggregate the bootstrap of ``metric`` on ``items`` uses (module docstring for the choice).

    Args:
        metric: The metric.
        items: One trial's scored items (non-empty), in a fixed order (sorted by sample id).
        result: ``metric(items)`` when already computed.
        method: When given, the path taken is appended (``fixed``, ``fast``, ``mean`` or ``recomputed``).
    """
    result = result if result is not None else metric(list(items))
    per_sample_mean = (all(v is not None for v in result.per_sample)
                       and _close(float(np.mean(np.array(result.per_sample, dtype=np.float64))), float(result.value)))
    build = FAST_PATHS.get(getattr(metric, "name", ""))
    fixed = approximation(metric, len(items)) is not None and per_sample_mean
    fast = build(metric, items, result) if build is not None and not fixed else None
    if fixed:  # the per-item scores under the whole split's statistics: their mean is the headline
        chosen, path = mean_aggregate(np.array(result.per_sample, dtype=np.float64)), "fixed"
    elif fast is not None and _agrees(fast, metric, items, float(result.value)):
        chosen, path = fast, "fast"
    elif not getattr(metric, "corpus_level", False) and per_sample_mean:
        chosen, path = mean_aggregate(np.array(result.per_sample, dtype=np.float64)), "mean"
    else:
        chosen, path = generic_aggregate(metric, items), "recomputed"
    if method is not None:
        method.append(path)
    return chosen
