"""Every registered metric's ci95 is the bootstrap of its OWN headline (issue 26).

For each metric in ``registry.METRICS`` a case below holds scored items where the headline is not the
plain per-sample mean wherever the metric allows it (mean of types, NDCG over annotated rounds, AUC,
mWAP, corpus CIDEr-D, (top-1 + top-5) / 2); the interval of ``stats.trials_ci`` (vectorised aggregates)
must equal a slow reference -- the documented draw written as a loop, the metric's own code recomputed
on every resample's items -- and bracket the headline. A metric registered without a case here fails
``test_every_registered_metric_has_a_case``. The same lines in another order give the same interval.
"""

from __future__ import annotations

import math
import random
import shutil
from collections.abc import Callable

import numpy as np
import pytest

import flamingo_eval.metrics  # noqa: F401  (registers the metrics)
from flamingo_eval.errors import UserError
from flamingo_eval.metrics import aggregates, stats
from flamingo_eval.metrics.base import Metric, MetricInput
from flamingo_eval.metrics.stats import scores_ci, trials_ci
from flamingo_eval.metrics.wups import Wups
from flamingo_eval.registry import METRICS
from tests.wordnet_standin import StandInWordNet

RESAMPLES = 200
SLOW_REFERENCE = {"rareact_mwap": 100, "vqa_accuracy": 100}
"""Fewer resamples where the reference (the metric per resample) is slow."""
Case = tuple[Callable[[], Metric], list[list[MetricInput]]]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _vqa_items(rng: np.random.Generator, n: int, tag: str = "") -> list[MetricInput]:
    others = ("cat", "bird", "horse", "cow", "pig", "goat", "sheep", "fish", "frog", "ant")
    return [MetricInput(f"q{j:03d}", "dog", tuple(["dog"] * int(k) + list(others[: 10 - int(k)])))
            for j, k in enumerate(rng.integers(0, 5, n))]


def _choice_items(rng: np.random.Generator, n: int, options: int, types: tuple[str, ...] = ()) -> list[MetricInput]:
    out = []
    for j in range(n):
        label = int(rng.integers(0, options))
        scores = rng.random(options)
        if rng.random() < 0.5:
            scores[label] += 1.0  # right about half of the time
        extra = {"type": types[j % len(types)]} if types else {}
        out.append(MetricInput(f"s{j:03d}", "", (), label=label, scores=tuple(float(s) for s in scores), extra=extra))
    return out


def _by_type_items() -> list[MetricInput]:
    # type "a" (40 questions) 90% right, "b"/"c" (5 each) 20%: overall 76.0, mean of types 43.3
    items = []
    for j in range(50):
        t = "a" if j < 40 else ("b" if j < 45 else "c")
        right = (j % 10 != 0) if t == "a" else (j % 5 == 0)
        items.append(MetricInput(f"s{j:03d}", "", (), label=0, scores=(1.0, 0.0) if right else (0.0, 1.0),
                                 extra={"type": t}))
    return items


def _visdial_items(rng: np.random.Generator) -> list[MetricInput]:
    items = _choice_items(rng, 40, 10)
    return [MetricInput(i.sample_id, "", (), label=i.label, scores=i.scores,
                        extra={"gt_relevance": [float(r) for r in rng.random(10) * (rng.random(10) < 0.4)]}
                        if j % 3 == 0 else {}) for j, i in enumerate(items)]


def _auc_items(rng: np.random.Generator) -> list[MetricInput]:
    out = []
    for j in range(60):
        y = int(rng.integers(0, 2))
        yes = round(float(rng.normal(0.8 * y, 1.0)), 1)  # rounded: ties across classes
        out.append(MetricInput(f"m{j:03d}", "", (), label=y, scores=(0.0, yes)))
    return out


def _rareact_items(rng: np.random.Generator) -> list[MetricInput]:
    verbs, nouns = ("cut", "open", "push"), ("box", "door", "bag")
    out = []
    for j in range(72):
        v, n = verbs[j % 3], nouns[(j // 3) % 3]
        out.append(MetricInput(f"c{j:03d}", "", (), scores=tuple(round(float(s), 1) for s in rng.random(9)),
                               extra={"verb": v, "noun": n, "class_id": verbs.index(v) * 3 + nouns.index(n),
                                      "annotation": int(rng.choice([0, 1, 1, 2, 3])), "video_id": f"v{j // 4}"}))
    return out


def _caption_items() -> list[MetricInput]:
    # rare n-grams (each object named by few images): the document frequencies move a lot between resamples
    words = "dog cat man woman bike car tree ball kite boat horse bird train bus cake".split()
    out = []
    for j in range(15):
        a, b = words[j], words[(j * 7 + 3) % 15]
        refs = (f"a {a} near a {b}", f"the {a} and the {b}", f"a {a} with a red {b}")
        pred = (f"a {a} near a {b}", f"a {a} on the grass", f"a {b} near a {a}")[j % 3]
        out.append(MetricInput(f"i{j:02d}", pred, refs))
    return out


def _wups_items() -> list[MetricInput]:
    words = ["dog", "cat", "puppy", "ball", "toy"]
    return [MetricInput(f"w{j:02d}", words[j % 5], (words[(j * 2) % 5],), extra={"type": "CW"}) for j in range(20)]


def _skip_some(items: list[MetricInput], every: int) -> list[MetricInput]:
    """A second trial that skipped some samples (every ``every``-th)."""
    return [i for k, i in enumerate(items) if k % every]


def _wups_metric(tmp_dir: str) -> Metric:
    return Wups(stopwords_file=f"{tmp_dir}/stop.txt", backend=StandInWordNet())


CASES: dict[str, list[Callable[[str], Case]]] = {
    "vqa_accuracy": [lambda d: (METRICS.get("vqa_accuracy"), [_vqa_items(_rng(1), 60), _vqa_items(_rng(2), 60)])],
    "exact_match": [lambda d: (METRICS.get("exact_match"), [_vqa_items(_rng(3), 60)])],
    "ivqa_accuracy": [lambda d: (METRICS.get("ivqa_accuracy"), [_vqa_items(_rng(4), 60)])],
    "accuracy_topk": [lambda d: (lambda: METRICS.get("accuracy_topk")(headline="mean"),
                                 [_choice_items(_rng(5), 60, 8), _skip_some(_choice_items(_rng(6), 60, 8), 7)]),
                      lambda d: (METRICS.get("accuracy_topk"), [_choice_items(_rng(7), 60, 8)])],
    "accuracy_by_type": [lambda d: (lambda: METRICS.get("accuracy_by_type")(headline="mean_of_types"),
                                    [_by_type_items()]),
                         lambda d: (lambda: METRICS.get("accuracy_by_type")(
                             headline="mean_of_types", merge_types={"c": "b"}), [_by_type_items()]),
                         lambda d: (METRICS.get("accuracy_by_type"), [_by_type_items()])],
    "visdial": [lambda d: (METRICS.get("visdial"), [_visdial_items(_rng(8)), _visdial_items(_rng(9))])],
    "roc_auc": [lambda d: (METRICS.get("roc_auc"), [_auc_items(_rng(10))])],
    "rareact_mwap": [lambda d: (METRICS.get("rareact_mwap"), [_rareact_items(_rng(11))])],
    "cider": [lambda d: (METRICS.get("cider"), [_caption_items()])],
    "wups": [lambda d: (lambda: _wups_metric(d), [_wups_items()])],
}
"""Metric name -> builders of (metric factory, items per trial); every registered metric needs one."""


def _cases() -> list[tuple[str, int]]:
    return [(name, k) for name, builders in sorted(CASES.items()) for k in range(len(builders))]


def reference_ci(metric: Metric, trials: list[list[MetricInput]], n_resamples: int,
                 seed: int = 0) -> tuple[float, float]:
    """The documented bootstrap as loops: sorted ids drawn by ``default_rng(seed).integers`` (one chunk), each
    trial's items with a drawn id (repeats repeated) scored by the metric itself, the mean over trials."""
    ids = sorted({i.sample_id for items in trials for i in items})
    rows = np.random.default_rng(seed).integers(0, len(ids), size=(n_resamples, len(ids)))
    by_id = [{i.sample_id: i for i in items} for items in trials]
    values = []
    for row in rows:
        per_trial = []
        for t in by_id:
            drawn = [t[ids[j]] for j in sorted(row) if ids[j] in t]
            try:
                per_trial.append(metric(drawn).value if drawn else math.nan)
            except UserError:
                per_trial.append(math.nan)
        if not any(math.isnan(v) for v in per_trial):
            values.append(float(np.mean(per_trial)))
    lo, hi = np.quantile(values, [0.025, 0.975])
    return float(lo), float(hi)


def _build(name: str, k: int, tmp_path) -> tuple[Metric, list[list[MetricInput]]]:
    if name == "cider" and shutil.which("java") is None:
        pytest.skip("java not installed (the PTB tokenizer)")
    (tmp_path / "stop.txt").write_text("the\na\n")
    factory, trials = CASES[name][k](str(tmp_path))
    return factory(), trials


def test_every_registered_metric_has_a_case():
    assert set(METRICS.names()) <= set(CASES), f"metrics without an interval case: {set(METRICS.names()) - set(CASES)}"


@pytest.mark.parametrize("name,k", _cases())
def test_interval_is_the_bootstrap_of_the_metrics_own_headline(name: str, k: int, tmp_path):
    metric, trials = _build(name, k, tmp_path)
    results = [metric(items) for items in trials]
    headline = float(np.mean([r.value for r in results]))
    resamples = SLOW_REFERENCE.get(name, RESAMPLES)
    got = trials_ci(metric, trials, resamples)
    assert got is not None
    (lo, hi), used = got
    assert (lo, hi) == pytest.approx(reference_ci(metric, trials, resamples), abs=1e-6)
    assert lo <= headline <= hi
    assert used <= resamples
    if getattr(metric, "corpus_level", False) and all(None not in r.per_sample for r in results):
        # a case where resampling the per-sample scores (the old interval) is another statistic
        plain = scores_ci([([i.sample_id for i in t], r.per_sample) for t, r in zip(trials, results)], resamples)
        assert plain is not None and max(abs(plain[0][0] - lo), abs(plain[0][1] - hi)) > 0.5


@pytest.mark.parametrize("name,k", _cases())
def test_same_lines_in_another_order_same_interval(name: str, k: int, tmp_path):
    metric, trials = _build(name, k, tmp_path)
    shuffled = []
    for t, items in enumerate(trials):
        copy = list(items)
        random.Random(t).shuffle(copy)
        shuffled.append(copy)
    assert shuffled != trials
    assert trials_ci(metric, shuffled, 100) == trials_ci(metric, trials, 100)


def test_a_fast_path_that_disagrees_with_the_metric_is_not_used(monkeypatch: pytest.MonkeyPatch):
    metric = METRICS.get("accuracy_by_type")(headline="mean_of_types")
    items = _by_type_items()
    monkeypatch.setitem(aggregates.FAST_PATHS, "accuracy_by_type",
                        lambda m, its, res: lambda counts: np.full(len(counts), 50.0))
    path: list[str] = []
    aggregates.aggregate_for(metric, items, method=path)
    assert path == ["recomputed"]
    assert trials_ci(metric, [items], 100)[0] == pytest.approx(reference_ci(metric, [items], 100), abs=1e-9)


@pytest.mark.parametrize("name,k", [(n, k) for n, k in _cases() if n in aggregates.FAST_PATHS])
def test_the_fast_paths_are_taken(name: str, k: int, tmp_path):
    """Every registered case of a metric with a fast path takes it (the fallback would be exact but slow)."""
    metric, trials = _build(name, k, tmp_path)
    path: list[str] = []
    aggregates.aggregate_for(metric, sorted(trials[0], key=lambda i: i.sample_id), method=path)
    assert path == ["mean" if name == "accuracy_by_type" and metric.headline == "overall" else "fast"]


def test_two_level_bootstrap_widens_with_trial_spread():
    metric = METRICS.get("vqa_accuracy")()
    low = [MetricInput(f"q{j:02d}", "dog", ("dog",) * (3 if j % 2 else 1) + ("cat",) * 7) for j in range(40)]
    high = [MetricInput(i.sample_id, "dog", ("dog",) * 4 + ("cat",) * 6) for i in low]
    samples = trials_ci(metric, [low, high], 400)
    both = trials_ci(metric, [low, high], 400, resample_trials=True)
    assert samples is not None and both is not None
    assert both[0][1] - both[0][0] > samples[0][1] - samples[0][0] + 10.0
    # each two-level resample is the mean of trials drawn with replacement: reference as loops
    ids = sorted(i.sample_id for i in low)
    rows = np.random.default_rng(0).integers(0, len(ids), size=(400, len(ids)))
    picks = np.random.default_rng(1).integers(0, 2, size=(400, 2))
    per = [{i.sample_id: s for i, s in zip(t, metric(t).per_sample)} for t in (low, high)]
    vals = [np.mean([np.mean([per[p][ids[j]] for j in row]) for p in pick]) for row, pick in zip(rows, picks)]
    assert both[0] == pytest.approx(tuple(np.quantile(vals, [0.025, 0.975])), abs=1e-9)


def test_compare_paired_deltas_bootstrap_the_headline():
    """``compare``'s paired test of a non-mean metric: per resample, candidate minus baseline of the metric
    recomputed on the same draw (loop reference), both runs' values on all paired samples."""
    metric = METRICS.get("accuracy_by_type")(headline="mean_of_types")
    base = [_by_type_items()]
    cand = [[MetricInput(i.sample_id, "", (), label=i.label, scores=tuple(reversed(i.scores)) if k % 4 == 0
                         else i.scores, extra=i.extra) for k, i in enumerate(base[0])]]
    b, c, deltas = stats.paired_aggregate_deltas(metric, base, cand, 150, 3)
    assert (b, c) == (metric(base[0]).value, metric(cand[0]).value)
    ids = sorted(i.sample_id for i in base[0])
    rows = np.random.default_rng(3).integers(0, len(ids), size=(150, len(ids)))
    by_b, by_c = ({i.sample_id: i for i in t[0]} for t in (base, cand))
    ref = [metric([by_c[ids[j]] for j in row]).value - metric([by_b[ids[j]] for j in row]).value for row in rows]
    assert deltas == pytest.approx(np.array(ref), abs=1e-9)


def test_runner_uses_kept_scores_only_for_plain_means():
    by_type = METRICS.get("accuracy_by_type")(headline="mean_of_types")
    res = by_type(_by_type_items())
    assert not stats.is_plain_mean(by_type, res.value, res.per_sample)  # corpus_level: trials_ci on the items
    vqa = METRICS.get("vqa_accuracy")()
    res = vqa(_vqa_items(_rng(1), 30))
    assert stats.is_plain_mean(vqa, res.value, res.per_sample)
    assert not stats.is_plain_mean(vqa, res.value + 1.0, res.per_sample)  # a headline that is not the mean


def test_score_two_level_option_names_its_method():
    """``score --bootstrap-trials`` (or the record's ``run.bootstrap_trials``): the two-level interval."""
    from pathlib import Path

    from flamingo_eval.commands.list_cmd import load_card
    from flamingo_eval.results.rescore import score_file

    baseline = Path(__file__).resolve().parents[2] / "results" / "baselines" / "mini-easyvqa"
    plain = score_file(load_card("easyvqa"), baseline, bootstrap=300)["results"]
    both = score_file(load_card("easyvqa"), baseline, bootstrap=300, bootstrap_trials=True)["results"]
    for p, b in zip(plain, both, strict=True):
        assert (p["ci95_method"], b["ci95_method"]) == ("bootstrap: samples", "bootstrap: samples x trials")
        assert b["ci95"] != p["ci95"] and b["ci95"][0] <= b["mean"] <= b["ci95"][1]


def test_cider_over_a_large_split_holds_document_frequencies_and_says_so(monkeypatch: pytest.MonkeyPatch):
    """Over ``FIXED_DF_ABOVE`` items the cider interval resamples per-image scores under the whole split's
    document frequencies (the exact path costs minutes there): the record's method names it."""
    if shutil.which("java") is None:
        pytest.skip("java not installed (the PTB tokenizer)")
    from flamingo_eval.results.rescore import shots_ci

    metric, items = METRICS.get("cider")(), _caption_items()
    result = metric(items)
    exact = shots_ci(metric, [items], 200)
    assert exact["ci95_method"] == "bootstrap: samples"
    monkeypatch.setattr(aggregates, "FIXED_DF_ABOVE", len(items) - 1)
    path: list[str] = []
    aggregates.aggregate_for(metric, sorted(items, key=lambda i: i.sample_id), method=path)
    assert path == ["fixed"]
    fixed = shots_ci(metric, [items], 200)
    held = f"CIDEr-D document frequencies of the whole split (over {len(items) - 1:,} items)"
    assert fixed["ci95_method"] == f"bootstrap: samples; {held}"
    plain = scores_ci([([i.sample_id for i in items], result.per_sample)], 200)
    assert plain is not None and fixed["ci95"] == pytest.approx(list(plain[0]), abs=1e-9)
    assert fixed["ci95"] != pytest.approx(exact["ci95"], abs=0.5)
