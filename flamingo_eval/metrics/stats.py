"""Trial summaries and bootstrap confidence intervals.

Resampling is reproducible: ``rng = numpy.random.default_rng(seed)`` draws the whole index matrix
``rng.integers(0, n, size=(n_resamples, n))`` in one call; row r is resample r. Intervals are percentile
intervals (``numpy.percentile``, linear interpolation) at ``alpha / 2`` and ``1 - alpha / 2``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from flamingo_eval.errors import UserError
from flamingo_eval.metrics.base import Metric, MetricInput


def trial_summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """Mean and spread of per-trial headline values.

    Returns:
        ``mean``, ``std`` (population, ddof=0, as OpenFlamingo reports), ``std_ddof1`` (sample std; None
        for fewer than two trials) and ``n``.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise UserError("trial_summary: no trial values to summarise")
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=0)),
        "std_ddof1": float(arr.std(ddof=1)) if arr.size > 1 else None,
        "n": int(arr.size),
    }


def paired_ids(a: Mapping[int, Mapping[str, object]], b: Mapping[int, Mapping[str, object]],
               seeds: Sequence[int]) -> list[str]:
    """The paired subset of two runs: sample ids present in both runs for every seed in ``seeds``.

    Args:
        a: Run A's samples per trial seed (seed -> sample id -> anything).
        b: Run B's, the same way.
        seeds: The trial seeds both runs hold.

    Returns:
        The ids, sorted. Every statistic of a paired comparison -- the per-run values shown included --
        must be computed on exactly these samples, or runs of different ``--limit`` look different.
    """
    common: set[str] | None = None
    for s in seeds:
        ids = set(a.get(s, {})) & set(b.get(s, {}))
        common = ids if common is None else common & ids
    return sorted(common or ())


def resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """The (n_resamples, n) matrix of item indices used by every bootstrap here."""
    if n < 1:
        raise UserError("bootstrap: no items to resample")
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def _interval(stats: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.percentile(stats, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return float(lo), float(hi)


def _per_sample_array(metric: Metric, items: list[MetricInput]) -> np.ndarray:
    per_sample = metric(items).per_sample
    if any(v is None for v in per_sample):
        raise UserError(
            f"bootstrap: metric '{metric.name}' has no per-sample scores; it must be corpus_level"
        )
    return np.asarray(per_sample, dtype=np.float64)


def _corpus_stats(metric: Metric, items: list[MetricInput], idx: np.ndarray) -> np.ndarray:
    """Metric value on each resample; resamples where the metric is undefined (UserError) are skipped."""
    values = []
    for row in idx:
        try:
            values.append(metric([items[j] for j in row]).value)
        except UserError:
            continue  # e.g. ROC-AUC on a resample that holds one class only
    if not values:
        raise UserError(f"bootstrap: metric '{metric.name}' is undefined on every resample")
    return np.asarray(values, dtype=np.float64)


def bootstrap_ci(
    metric: Metric,
    items: list[MetricInput],
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    corpus_resamples: int | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a metric's headline value over items.

    Args:
        metric: The metric. Non-corpus metrics resample their per-sample scores (vectorised); corpus
            metrics are recomputed on every resample.
        items: The scored items.
        n_resamples: Number of resamples.
        seed: Seed of ``numpy.random.default_rng``.
        alpha: 1 - confidence level.
        corpus_resamples: Number of resamples for corpus metrics (slow ones, e.g. CIDEr); defaults to
            ``n_resamples``. It only shortens the same index matrix (its first rows).

    Returns:
        ``(lo, hi)`` on the metric's scale (0-100).
    """
    idx = resample_indices(len(items), n_resamples, seed)
    if metric.corpus_level:
        stats = _corpus_stats(metric, items, idx[: corpus_resamples or n_resamples])
    else:
        stats = _per_sample_array(metric, items)[idx].mean(axis=1)
    return _interval(stats, alpha)


def _paired_summary(delta: float, stats: np.ndarray, alpha: float) -> tuple[float, float, float, float]:
    lo, hi = _interval(stats, alpha)
    # Two-sided: twice the smaller share of resampled deltas on either side of zero, at most 1.
    p_value = min(1.0, 2.0 * min(float(np.mean(stats <= 0.0)), float(np.mean(stats >= 0.0))))
    return delta, lo, hi, p_value


def paired_bootstrap(
    a_scores: Sequence[float],
    b_scores: Sequence[float],
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float, float, float]:
    """Paired bootstrap of the difference of means, B minus A, over aligned per-sample scores.

    Args:
        a_scores: Per-sample scores of system A.
        b_scores: Per-sample scores of system B, same samples in the same order.
        n_resamples: Number of resamples.
        seed: Seed of ``numpy.random.default_rng``.
        alpha: 1 - confidence level.

    Returns:
        ``(delta, ci_lo, ci_hi, p_value)``: delta = mean(B) - mean(A); the percentile CI of the resampled
        deltas; a two-sided p-value, ``min(1, 2 * min(P*(d <= 0), P*(d >= 0)))``.
    """
    a = np.asarray(a_scores, dtype=np.float64)
    b = np.asarray(b_scores, dtype=np.float64)
    if a.shape != b.shape:
        raise UserError(
            f"paired_bootstrap: {a.size} scores for A but {b.size} for B; align the samples first"
        )
    diff = b - a
    stats = diff[resample_indices(diff.size, n_resamples, seed)].mean(axis=1)
    return _paired_summary(float(diff.mean()), stats, alpha)


def paired_bootstrap_corpus(
    metric: Metric,
    items_a: list[MetricInput],
    items_b: list[MetricInput],
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float, float, float]:
    """Paired bootstrap for any metric: recompute it on the same resample of both aligned item lists.

    Returns:
        ``(delta, ci_lo, ci_hi, p_value)`` as ``paired_bootstrap``, with delta = metric(B) - metric(A).
        Resamples where the metric is undefined for either system are skipped.
    """
    if [i.sample_id for i in items_a] != [i.sample_id for i in items_b]:
        raise UserError(
            "paired_bootstrap: the two runs score different samples (or orders); align them first"
        )
    delta = metric(items_b).value - metric(items_a).value
    deltas = []
    for row in resample_indices(len(items_a), n_resamples, seed):
        try:
            a = metric([items_a[j] for j in row]).value
            b = metric([items_b[j] for j in row]).value
        except UserError:
            continue
        deltas.append(b - a)
    if not deltas:
        raise UserError(f"paired_bootstrap: metric '{metric.name}' is undefined on every resample")
    stats = np.asarray(deltas, dtype=np.float64)
    if not math.isfinite(delta):
        raise UserError(f"paired_bootstrap: metric '{metric.name}' gave a non-finite value")
    return _paired_summary(delta, stats, alpha)
