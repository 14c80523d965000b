"""The statistics of the results side, in one place: trial summaries, bootstrap intervals, paired tests.

Every number the runner, ``score``, ``compare`` and ``leaderboard`` derive from scores comes from here.

Resampling is reproducible and the same everywhere: :func:`resample_chunks` draws index matrices from
``numpy.random.default_rng(seed)``, ``rng.integers(0, n, size=(rows, n))`` chunk after chunk, where the
chunk height depends on ``n`` only (:data:`CHUNK` elements per chunk), so a statistic never depends on
the machine; :func:`count_chunks` turns them into count matrices over the SORTED sample ids, so it never
depends on the order of the prediction lines either. Intervals are percentile intervals (linear
interpolation, ``numpy.quantile``).

* Trials: :func:`trial_summary` (mean, population std, sample std; exact float sums via ``statistics``).
* One run: :func:`trials_ci` -- the percentile bootstrap of a shots setting's headline over samples:
  sample ids are resampled with replacement, the same draw for every trial (trials share the eval
  samples; only their demos differ), each trial's headline is the METRIC'S OWN aggregate on the draw
  (``metrics/aggregates.py``: vectorised on the count matrices) and the statistic is the mean over
  trials, as the record's ``mean``; optionally two-level (:func:`combine_trials`). This is the run's
  ``ci95``; :func:`scores_ci` is the same from kept per-sample scores of plain-mean metrics.
* Two runs: :func:`paired_test` (paired bootstrap of per-sample differences + sign-flip permutation
  p-values) and :func:`paired_aggregate_deltas` (the paired bootstrap of a non-mean metric's own
  headline), used by ``compare``.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from flamingo_eval.errors import UserError
from flamingo_eval.metrics.base import Metric, MetricInput, MetricResult

CHUNK = 2_000_000
"""Resampled elements per vectorised chunk (~16 MB of float64): bounds memory on 200k-sample splits."""
BOOTSTRAP_SEED = 0
"""Seed of a run's ``ci95``: fixed, so the interval is a function of the predictions alone (``score``
recomputes the record's interval from predictions.jsonl)."""


def trial_summary(values: Sequence[float | None]) -> dict[str, float | None]:
    """Mean and spread of per-trial headline values.

    Args:
        values: One headline value per trial; None for an unscored trial (submission files).

    Returns:
        ``mean``, ``std`` (population, ddof 0, as OpenFlamingo reports) and ``std_ddof1`` (sample std).
        One trial: ``std`` is 0.0 (the spread of one value) and ``std_ddof1`` is None (undefined). Any
        unscored trial: all three are None.

    Raises:
        UserError: No values at all.
    """
    if not values:
        raise UserError("trial_summary: no trial values to summarise")
    scored = [float(v) for v in values if v is not None]
    if len(scored) < len(values):
        return {"mean": None, "std": None, "std_ddof1": None}
    # statistics: correctly rounded sums, so the record's numbers do not depend on summation order
    return {"mean": statistics.fmean(scored), "std": statistics.pstdev(scored),
            "std_ddof1": statistics.stdev(scored) if len(scored) > 1 else None}


def trial_std(values: Sequence[float], ddof: int) -> float:
    """Std over trial values with ``ddof`` 0 or 1; NaN when fewer than two values (nothing to show)."""
    if len(values) < 2:
        return float("nan")
    s = trial_summary(values)
    return float(s["std_ddof1"] if ddof == 1 else s["std"])  # type: ignore[arg-type]


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


def _rows_per_chunk(n: int) -> int:
    return max(1, CHUNK // max(n, 1))


def resample_chunks(n: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Index matrices ``(rows, n)`` of with-replacement resamples, ``n_resamples`` rows in all.

    The one source of resamples here (see the module docstring for the exact stream).
    """
    if n < 1:
        raise UserError("bootstrap: no items to resample")
    rng = np.random.default_rng(seed)
    step = _rows_per_chunk(n)
    for start in range(0, n_resamples, step):
        yield rng.integers(0, n, size=(min(step, n_resamples - start), n))


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Two-sided percentile interval of ``values`` at ``level`` (quantiles (1-level)/2 and (1+level)/2)."""
    lo, hi = np.quantile(values, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


def bootstrap_means(d: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Means of ``n_resamples`` with-replacement resamples of ``d`` (vectorised, chunked)."""
    return np.concatenate([d[idx].mean(axis=1) for idx in resample_chunks(len(d), n_resamples, seed)])


def bootstrap_values(stat: Callable[[np.ndarray], float], n: int, n_resamples: int, seed: int) -> np.ndarray:
    """``stat(indices)`` on each resample of ``n`` items; resamples where it raises UserError are skipped
    (e.g. ROC-AUC on a draw holding one class only).

    Raises:
        UserError: The statistic is undefined on every resample.
    """
    out = []
    for idx in resample_chunks(n, n_resamples, seed):
        for row in idx:
            try:
                out.append(float(stat(row)))
            except UserError:
                continue
    if not out:
        raise UserError("bootstrap: the statistic is undefined on every resample")
    return np.asarray(out, dtype=np.float64)


def count_chunks(n: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """The resamples of :func:`resample_chunks` as count matrices ``(rows, n)``: how often each item is drawn.

    A metric's value on a resample depends only on these counts (every metric is a function of the multiset
    of its items), so the aggregates of ``metrics/aggregates.py`` take them as weights, vectorised.
    """
    for idx in resample_chunks(n, n_resamples, seed):
        rows = idx.shape[0]
        flat = (idx + (np.arange(rows, dtype=np.int64) * n)[:, None]).ravel()
        yield np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)


TrialAggregates = Sequence[tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]]
"""Per trial: (the columns of its items among the sorted sample ids, its aggregate on count matrices)."""


def _aggregate_matrix(aggs: TrialAggregates, n: int, n_resamples: int, seed: int) -> np.ndarray:
    """Each trial's headline on each resample, ``(trials, n_resamples)``; NaN where undefined."""
    chunks = [np.stack([agg(counts[:, cols]) for cols, agg in aggs]) for counts in count_chunks(n, n_resamples, seed)]
    return np.concatenate(chunks, axis=1)


def combine_trials(values: np.ndarray, seed: int, resample_trials: bool = False) -> np.ndarray:
    """Per resample, the mean over trials of ``values`` ``(trials, resamples)``, like the record's ``mean``.

    With ``resample_trials`` (the two-level bootstrap) each resample also draws the trials with replacement
    (``default_rng(seed + 1).integers(0, trials, size=(resamples, trials))``), so the interval holds the
    spread over demo draws as well. Resamples where a used trial is undefined are dropped.
    """
    if resample_trials:
        picks = np.random.default_rng(seed + 1).integers(0, values.shape[0], size=(values.shape[1], values.shape[0]))
        stats_ = values[picks, np.arange(values.shape[1])[:, None]].mean(axis=1)
    else:
        stats_ = values.mean(axis=0)
    return stats_[np.isfinite(stats_)]


def ci_method(resample_trials: bool, held: str | None = None) -> str:
    """The ``ci95_method`` a record carries: what the interval resamples and, as ``held``, what it holds fixed
    (``metrics.aggregates.approximation``; docs/results.md)."""
    return ("bootstrap: samples x trials" if resample_trials else "bootstrap: samples") + (f"; {held}" if held else "")


def _reordered(result: MetricResult, order: Sequence[int]) -> MetricResult:
    """``result`` with its per-sample scores in ``order`` (the headline does not depend on item order)."""
    return MetricResult(result.value, tuple(result.per_sample[j] for j in order), result.extras)


def trials_ci(metric: Metric, trials: Sequence[Sequence[MetricInput]], n_resamples: int,
              seed: int = BOOTSTRAP_SEED, level: float = 0.95, resample_trials: bool = False,
              results: Sequence[MetricResult] | None = None) -> tuple[tuple[float, float], int] | None:
    """Percentile bootstrap interval of a shots setting's headline value over samples (x trials).

    Args:
        metric: The benchmark's metric.
        trials: Each trial's scored items. Sample ids are resampled over the sorted union of the trials' ids
            (so the line order of the predictions does not matter), the same draw for every trial; a trial
            that skipped a drawn sample is scored on the drawn samples it holds.
        n_resamples: Resamples (``run.bootstrap``); 0 disables the interval.
        seed: Seed of the resamples.
        level: Confidence level.
        resample_trials: Also resample the trials (two-level bootstrap, :func:`combine_trials`).
        results: ``metric(items)`` of each trial when already computed (the metric is not run again).

    Returns:
        ``((lo, hi), resamples used)`` on the metric's scale, or None when there is nothing to resample.
        Each resample's statistic is the mean over trials of the metric's OWN headline on the drawn samples
        (``metrics.aggregates.aggregate_for``: vectorised where the metric has a fast path, else the metric
        recomputed on the drawn items); resamples where it is undefined (ROC-AUC of one class) are dropped,
        so fewer may be used.
    """
    from flamingo_eval.metrics.aggregates import aggregate_for

    if n_resamples < 1 or not any(trials):
        return None
    built = []
    for t, items in enumerate(trials):
        if not items:
            continue
        res = results[t] if results is not None else metric(list(items))
        order = sorted(range(len(items)), key=lambda j: items[j].sample_id)
        built.append(([items[j].sample_id for j in order], aggregate_for(
            metric, [items[j] for j in order], _reordered(res, order))))
    ids = sorted({sid for sample_ids, _ in built for sid in sample_ids})
    col = {sid: j for j, sid in enumerate(ids)}
    aggs = [(np.array([col[s] for s in sample_ids], dtype=np.int64), agg) for sample_ids, agg in built]
    stats_ = combine_trials(_aggregate_matrix(aggs, len(ids), n_resamples, seed), seed, resample_trials)
    if stats_.size == 0:
        return None
    return interval(stats_, level), int(stats_.size)


def is_plain_mean(metric: Metric, value: float | None, per_sample: Sequence[float | None]) -> bool:
    """Whether a trial's headline ``value`` is the mean of its per-sample scores, so :func:`scores_ci` gives
    the bootstrap of the headline (else :func:`trials_ci` on the items must)."""
    if getattr(metric, "corpus_level", False) or any(v is None for v in per_sample):
        return False
    if not per_sample:
        return True
    return value is not None and abs(float(np.mean(np.asarray(per_sample, dtype=np.float64))) - value) <= 1e-6


def scores_ci(trials: Sequence[tuple[Sequence[str], Sequence[float | None]]], n_resamples: int,
              seed: int = BOOTSTRAP_SEED, level: float = 0.95,
              resample_trials: bool = False) -> tuple[tuple[float, float], int] | None:
    """:func:`trials_ci` from per-sample scores already computed: per trial, (sample ids, their scores).

    The runner has every trial's per-sample scores from scoring it, so the interval needs no second pass of
    the metric. Same numbers as :func:`trials_ci` for a metric whose headline is the mean of its per-sample
    scores (``corpus_level`` False); for any other metric use :func:`trials_ci`.
    """
    from flamingo_eval.metrics.aggregates import mean_aggregate

    if n_resamples < 1 or not any(len(ids) for ids, _ in trials):
        return None
    ids = sorted({sid for sample_ids, _ in trials for sid in sample_ids})
    col = {sid: j for j, sid in enumerate(ids)}
    aggs = []
    for sample_ids, per_sample in trials:
        if len(sample_ids):
            pairs = sorted(zip(sample_ids, per_sample, strict=True), key=lambda p: p[0])
            scores = np.array([s for _, s in pairs], dtype=np.float64)
            aggs.append((np.array([col[s] for s, _ in pairs], dtype=np.int64), mean_aggregate(scores)))
    stats_ = combine_trials(_aggregate_matrix(aggs, len(ids), n_resamples, seed), seed, resample_trials)
    if stats_.size == 0:
        return None
    return interval(stats_, level), int(stats_.size)


def sign_flip_pvalue(x: np.ndarray, n_resamples: int, seed: int) -> float:
    """One-sided p-value for H1: mean(x) < 0 by randomly flipping the sign of each element.

    Exact (all 2**n sign patterns) when that is no more than ``n_resamples``; otherwise Monte Carlo
    with the (count + 1) / (n_resamples + 1) correction, so p is never 0.
    """
    n, observed = len(x), float(np.mean(x))
    tol = 1e-9 * max(1.0, float(np.max(np.abs(x))))  # float noise in signs @ x must not decide a tie
    if 2**n <= n_resamples:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        return float(np.mean(signs @ x / n <= observed + tol))
    rng = np.random.default_rng(seed)
    hits = 0
    step = _rows_per_chunk(n)
    for start in range(0, n_resamples, step):
        signs = rng.integers(0, 2, size=(min(step, n_resamples - start), n)) * 2.0 - 1.0
        hits += int(np.sum(signs @ x / n <= observed + tol))
    return (hits + 1) / (n_resamples + 1)


def paired_test(d: np.ndarray, max_drop: float, alpha: float, n_resamples: int,
                seed: int) -> tuple[float, float, float, float, float]:
    """Paired test on per-sample differences ``d`` (candidate - baseline) against a margin ``max_drop``.

    Returns:
        ``(delta, ci_lo, ci_hi, p_drop, p_gain)``: delta = mean(d); the bootstrap percentile interval at
        level ``1 - 2 * alpha`` (the two-sided interval matching a one-sided test at alpha); one-sided
        sign-flip p-values for "the drop exceeds max_drop" (signs flipped on ``d + max_drop``) and for
        "the gain exceeds max_drop".
    """
    delta = float(d.mean())
    lo, hi = interval(bootstrap_means(d, n_resamples, seed), 1.0 - 2.0 * alpha)
    p_drop = sign_flip_pvalue(d + max_drop, n_resamples, seed + 1)
    p_gain = sign_flip_pvalue(-(d - max_drop), n_resamples, seed + 2)
    return delta, lo, hi, p_drop, p_gain


def basic_bootstrap_pvalues(boot: np.ndarray, observed: float, max_drop: float) -> tuple[float, float]:
    """One-sided p-values (drop, gain beyond ``max_drop``) of a basic bootstrap: under the boundary null
    the statistic is distributed as ``boot - observed -/+ max_drop``; (count + 1) / (resamples + 1)."""
    p_drop = (1 + np.sum(boot - observed - max_drop <= observed)) / (len(boot) + 1)
    p_gain = (1 + np.sum(boot - observed + max_drop >= observed)) / (len(boot) + 1)
    return float(p_drop), float(p_gain)


def paired_aggregate_deltas(metric: Metric, base: Sequence[Sequence[MetricInput]],
                            cand: Sequence[Sequence[MetricInput]], n_resamples: int,
                            seed: int) -> tuple[float, float, np.ndarray]:
    """The paired bootstrap of a metric's OWN headline: ``compare`` on metrics that are not a plain mean.

    Args:
        metric: The metric of both runs.
        base: The baseline's items per trial seed, on the paired samples.
        cand: The candidate's, the same seeds in the same order.
        n_resamples: Resamples.
        seed: Seed of the draws (:func:`count_chunks` over the sorted paired ids: both runs get the same draw).

    Returns:
        ``(baseline value, candidate value, deltas)``: the values are means over trials of the metric on all
        paired samples; ``deltas`` holds, per resample where both are defined, candidate minus baseline of
        that mean recomputed on the draw (vectorised aggregates, ``metrics/aggregates.py``).
    """
    from flamingo_eval.metrics.aggregates import aggregate_for

    ids = sorted({i.sample_id for items in [*base, *cand] for i in items})
    col = {sid: j for j, sid in enumerate(ids)}
    values, aggs = [], []
    for side in (base, cand):
        ordered = [sorted(items, key=lambda i: i.sample_id) for items in side]
        results = [metric(list(items)) for items in ordered]
        values.append(float(np.mean([r.value for r in results])))
        aggs.append([(np.array([col[i.sample_id] for i in items], dtype=np.int64), aggregate_for(metric, items, r))
                     for items, r in zip(ordered, results)])
    both = _aggregate_matrix([*aggs[0], *aggs[1]], len(ids), n_resamples, seed)
    deltas = both[len(aggs[0]):].mean(axis=0) - both[: len(aggs[0])].mean(axis=0)
    return values[0], values[1], deltas[np.isfinite(deltas)]


def holm_adjust(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error at most alpha when ``adjusted < alpha``).

    The i-th smallest p-value is multiplied by ``k - i`` (i from 0, k p-values), the products are made
    non-decreasing in that order, and capped at 1; returned in the input order.
    """
    k = len(pvalues)
    out = [1.0] * k
    running = 0.0
    for rank, i in enumerate(sorted(range(k), key=lambda j: pvalues[j])):
        running = max(running, min(1.0, (k - rank) * float(pvalues[i])))
        out[i] = running
    return out


def detectable_drop(scores: np.ndarray, max_drop: float, alpha: float, power: float = 0.8) -> float:
    """The smallest drop (metric points) that the paired gate detects with probability ``power``.

    Args:
        scores: The baseline's per-sample scores on the paired samples, ``(trials, n)``, 0-100.
        max_drop: The gate's margin D; alpha: its one-sided level.
        power: The detection probability wanted (0.8).

    Returns:
        The drop in points, or NaN when even losing every sample would not be detected (docs/ci.md,
        *Sensitivity*, gives the model): a fault that loses a fraction q of the samples outright in every
        trial, on top of the baseline's own trial-to-trial disagreement (the per-sample difference between
        two of its trials, averaged over the trials' pairs, divided by the number of trials; 0 with one
        trial). With ``m1, m2`` the mean and mean square of the trial-averaged baseline scores, the drop is
        ``q m1`` and the per-sample differences ``d`` have variance ``s2 = q m2 - (q m1)**2 + noise``; the
        sign-flip test on ``x = d + D`` rejects, in the normal approximation, when
        ``mean(x) < -z(1-alpha) sqrt(E[x**2] / n)``, so the drop is detected with ``power`` when
        ``(drop - D) - z(1-alpha) sqrt((s2 + (drop - D)**2) / n) >= z(power) sqrt(s2 / n)``; the smallest such
        drop on a 0.01-point grid is returned.
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    trials, n = scores.shape
    mean = scores.mean(axis=0)
    m1, m2 = float(mean.mean()), float((mean**2).mean())
    pairs = list(itertools.combinations(range(trials), 2))
    noise = float(np.mean([np.var(scores[a] - scores[b]) for a, b in pairs])) / trials if pairs else 0.0
    drops = np.arange(max_drop + 0.01, m1 + 0.005, 0.01)
    if n < 2 or m1 <= 0 or drops.size == 0:
        return float("nan")
    q = drops / m1
    s2 = np.maximum(q * m2 - drops**2, 0.0) + noise
    za, zb = statistics.NormalDist().inv_cdf(1 - alpha), statistics.NormalDist().inv_cdf(power)
    excess = drops - max_drop
    ok = excess - za * np.sqrt((s2 + excess**2) / n) >= zb * np.sqrt(s2 / n)
    return float(drops[np.argmax(ok)]) if ok.any() else float("nan")
