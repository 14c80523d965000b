"""Trial summaries and bootstrap intervals, checked against straightforward loop implementations."""

from __future__ import annotations

import numpy as np
import pytest

from flamingo_eval.errors import UserError
from flamingo_eval.metrics import (
    MetricInput,
    MetricResult,
    bootstrap_ci,
    paired_bootstrap,
    paired_bootstrap_corpus,
    trial_summary,
)
from flamingo_eval.registry import METRICS

OTHERS = ["cat", "bird", "horse", "cow", "pig", "goat", "sheep", "fish", "frog", "ant"]


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile written out by hand."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def reference_ci(
    per_item: list[float], n_resamples: int, seed: int, alpha: float = 0.05
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(per_item), size=(n_resamples, len(per_item)))
    means = [sum(per_item[int(j)] for j in row) / len(row) for row in rows]
    return percentile(means, 100 * alpha / 2), percentile(means, 100 * (1 - alpha / 2))


def vqa_items() -> tuple[list[MetricInput], list[float]]:
    """100 items scoring 55x1.0, 5x0.9, 5x0.6, 5x0.3, 30x0 (dogs among 10 answers: 4, 3, 2, 1, 0)."""
    counts = [4] * 55 + [3] * 5 + [2] * 5 + [1] * 5 + [0] * 30
    items = [MetricInput(str(i), "dog", tuple(["dog"] * k + OTHERS[: 10 - k])) for i, k in enumerate(counts)]
    per_item = [1.0] * 55 + [0.9] * 5 + [0.6] * 5 + [0.3] * 5 + [0.0] * 30
    return items, per_item


def test_trial_summary_reference():
    summary = trial_summary([79.1, 80.3, 78.6])
    assert summary["mean"] == pytest.approx(79.333333, abs=1e-6)
    assert summary["std"] == pytest.approx(0.713364, abs=1e-6)
    assert summary["std_ddof1"] == pytest.approx(0.873689, abs=1e-6)
    assert summary["n"] == 3
    assert trial_summary([50.0])["std_ddof1"] is None
    with pytest.raises(UserError):
        trial_summary([])


def test_bootstrap_per_sample_matches_reference():
    items, per_item = vqa_items()
    metric = METRICS.get("vqa_accuracy")()
    assert metric(items).value == pytest.approx(64.0)
    lo, hi = bootstrap_ci(metric, items, n_resamples=1000, seed=0)
    ref_lo, ref_hi = reference_ci([100 * v for v in per_item], 1000, 0)
    assert (lo, hi) == pytest.approx((ref_lo, ref_hi), abs=1e-9)
    assert lo < 64.0 < hi
    assert bootstrap_ci(metric, items, seed=1) != (lo, hi)


class MedianLength:
    """A corpus metric that is not a mean: median answer length x10."""

    name = "median_length"
    corpus_level = True

    def __call__(self, items: list[MetricInput]) -> MetricResult:
        return MetricResult(float(np.median([10 * len(i.answer) for i in items])), tuple(None for _ in items))


def test_bootstrap_corpus_metric_recomputes():
    items = [MetricInput(str(i), "x" * (i % 7), ()) for i in range(30)]
    lo, hi = bootstrap_ci(MedianLength(), items, n_resamples=500, seed=3, corpus_resamples=200)
    rows = np.random.default_rng(3).integers(0, 30, size=(500, 30))[:200]
    values = [sorted(10 * (int(j) % 7) for j in row) for row in rows]
    medians = [(v[14] + v[15]) / 2 for v in values]
    assert (lo, hi) == pytest.approx((percentile(medians, 2.5), percentile(medians, 97.5)))


def test_per_sample_metric_without_scores_must_be_corpus_level():
    class Broken(MedianLength):
        corpus_level = False

    with pytest.raises(UserError, match="corpus_level"):
        bootstrap_ci(Broken(), [MetricInput("a", "x", ())])


def test_paired_bootstrap():
    rng = np.random.default_rng(42)
    a = rng.random(50) * 100
    b = a + rng.normal(3.0, 5.0, 50)
    delta, lo, hi, p = paired_bootstrap(a, b, n_resamples=1000, seed=0)
    assert delta == pytest.approx(float(np.mean(b - a)))
    ref_lo, ref_hi = reference_ci(list(b - a), 1000, 0)
    assert (lo, hi) == pytest.approx((ref_lo, ref_hi))
    rows = np.random.default_rng(0).integers(0, 50, size=(1000, 50))
    deltas = [float(np.mean((b - a)[row])) for row in rows]
    ref_p = min(1.0, 2 * min(sum(d <= 0 for d in deltas), sum(d >= 0 for d in deltas)) / 1000)
    assert p == pytest.approx(ref_p)
    assert paired_bootstrap(a, a) == (0.0, 0.0, 0.0, 1.0)
    assert paired_bootstrap(a, a + 5.0)[3] == 0.0
    with pytest.raises(UserError, match="align"):
        paired_bootstrap(a, a[:10])


def test_paired_bootstrap_corpus():
    items_a, _ = vqa_items()
    items_b = [
        MetricInput(i.sample_id, "cat" if n % 2 else "dog", i.references) for n, i in enumerate(items_a)
    ]
    metric = METRICS.get("vqa_accuracy")()
    delta, lo, hi, _p = paired_bootstrap_corpus(metric, items_a, items_b, n_resamples=200, seed=0)
    assert delta == pytest.approx(metric(items_b).value - metric(items_a).value)
    a = np.asarray(metric(items_a).per_sample)
    b = np.asarray(metric(items_b).per_sample)
    assert paired_bootstrap(a, b, n_resamples=200, seed=0)[:3] == pytest.approx((delta, lo, hi))
    with pytest.raises(UserError, match="align"):
        paired_bootstrap_corpus(metric, items_a, items_b[::-1])
