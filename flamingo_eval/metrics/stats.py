"""The statistics of the results side, in one place: trial summaries, bootstrap intervals, paired tests.

Every number the runner, ``score``, ``compare`` and ``leaderboard`` derive from scores comes from here.

Resampling is reproducible and the same everywhere: :func:`resample_chunks` draws index matrices from
``numpy.random.default_rng(seed)``, ``rng.integers(0, n, size=(rows, n))`` chunk after chunk, where the
chunk height depends on ``n`` only (:data:`CHUNK` elements per chunk), so a statistic never depends on
the machine. Intervals are percentile intervals (linear interpolation, ``numpy.quantile``).

* Trials: :func:`trial_summary` (mean, population std, sample std; exact float sums via ``statistics``).
* One run: :func:`trials_ci` -- the percentile bootstrap of a shots setting's headline value over
  samples x trials: sample ids are resampled with replacement, the same draw for every trial (trials
  share the eval samples; only their demos differ), each trial's value is computed on the draw and the
  statistic is the mean over trials, as the record's ``mean``. This is the run's ``ci95``.
* Two runs: :func:`paired_test` (paired bootstrap of per-sample differences + sign-flip permutation
  p-values) and :func:`bootstrap_values` (any statistic recomputed per resample, e.g. a corpus metric's
  paired delta), used by ``compare``.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from flamingo_eval.errors import UserError
from flamingo_eval.metrics.base import Metric, MetricInput

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


def _masked_trial_means(scores: np.ndarray, present: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Per resample: mean over trials of each trial's mean score over the drawn samples it holds."""
    filled = np.where(present, scores, 0.0)
    out = []
    for idx in resample_chunks(scores.shape[1], n_resamples, seed):
        sums = filled[:, idx].sum(axis=2)  # (trials, rows)
        counts = present[:, idx].sum(axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append((sums / counts).mean(axis=0))
    stats = np.concatenate(out)
    return stats[np.isfinite(stats)]  # a draw missing every sample of some trial has no value


def trials_ci(metric: Metric, trials: Sequence[Sequence[MetricInput]], n_resamples: int,
              seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> tuple[tuple[float, float], int] | None:
    """Percentile bootstrap interval of a shots setting's value over samples x trials.

    Args:
        metric: The benchmark's metric.
        trials: Each trial's scored items. Sample ids are resampled over the union of the trials' ids (in
            first-seen order); a trial that skipped a drawn sample is scored on the drawn samples it holds.
        n_resamples: Resamples (``run.bootstrap``); 0 disables the interval.
        seed: Seed of the resamples.
        level: Confidence level.

    Returns:
        ``((lo, hi), resamples used)`` on the metric's scale, or None when there is nothing to resample
        (``n_resamples`` 0, or no scored item). When every item has a per-sample score (all per-sample
        metrics, and CIDEr: its value is the mean of per-image scores) the per-sample scores are
        resampled, vectorised -- for CIDEr the document frequencies stay those of the whole split. Else
        (ROC-AUC, VisDial) the metric is recomputed on every resample; resamples where it is undefined
        are dropped, so fewer may be used.
    """
    if n_resamples < 1 or not any(trials):
        return None
    results = [metric(list(items)) for items in trials]
    if all(v is not None for r in results for v in r.per_sample):
        return scores_ci([([i.sample_id for i in items], r.per_sample) for items, r in zip(trials, results)],
                         n_resamples, seed, level)
    ids = list(dict.fromkeys(item.sample_id for items in trials for item in items))
    by_id = [{i.sample_id: i for i in items} for items in trials]

    def value(idx: np.ndarray) -> float:
        drawn = [ids[j] for j in idx]
        return float(np.mean([metric([t[s] for s in drawn if s in t]).value for t in by_id]))

    stats = bootstrap_values(value, len(ids), n_resamples, seed)
    if stats.size == 0:
        return None
    return interval(stats, level), int(stats.size)


def scores_ci(trials: Sequence[tuple[Sequence[str], Sequence[float | None]]], n_resamples: int,
              seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> tuple[tuple[float, float], int] | None:
    """:func:`trials_ci` from per-sample scores already computed: per trial, (sample ids, their scores).

    The runner has every trial's per-sample scores from scoring it, so the interval needs no second pass of
    the metric (it was ~half of a stub-fast run's time at full size). Same ids, same order, same numbers as
    :func:`trials_ci` on the items those scores came from; valid only when every sample has a per-sample
    score (else :func:`trials_ci` recomputes the metric per resample).
    """
    if n_resamples < 1 or not any(len(ids) for ids, _ in trials):
        return None
    ids = list(dict.fromkeys(sid for sample_ids, _ in trials for sid in sample_ids))
    col = {sid: j for j, sid in enumerate(ids)}
    scores = np.zeros((len(trials), len(ids)))
    present = np.zeros((len(trials), len(ids)), dtype=bool)
    for t, (sample_ids, per_sample) in enumerate(trials):
        cols = [col[sid] for sid in sample_ids]
        scores[t, cols] = np.asarray(per_sample, dtype=np.float64)
        present[t, cols] = True
    stats = _masked_trial_means(scores, present, n_resamples, seed)
    if stats.size == 0:
        return None
    return interval(stats, level), int(stats.size)


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
