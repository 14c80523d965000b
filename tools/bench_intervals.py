"""Benchmark of the ci95 bootstrap (issue 26): seconds per metric at full size, on synthetic scored items.

    HF_HUB_OFFLINE=1 .venv/bin/python -m tools.bench_intervals [--resamples 1000] [--n 214354] [--only NAME ...]

* ``rareact``: ``flamingo-eval score rareact`` (``rescore.score_file``) on a 7,607-clip predictions file of
  122 actions / 905 videos (RareAct's size; random scores), 1,000 resamples: the whole command's work
  (read, check, metric, interval).
* every other path at ``--n`` samples (default 214,354, VQAv2 val): one metric pass, then ``trials_ci`` given
  that result, as ``score`` calls it (a fast path is checked on one resample: one more metric call). The paths:
  per-sample mean (VQA accuracy; exact match, iVQA, WUPS and top-k accuracy share it), the runner's
  ``scores_ci`` on kept scores, accuracy by type (mean of types), VisDial (NDCG), ROC-AUC, and CIDEr-D
  (``--cider-n`` images, default 5,000 as COCO's test split, and 214k too with ``--cider-n 214354``: over
  10,000 images the interval holds the whole split's document frequencies, ``aggregates.approximation``).

Prints one line per case: name, samples, metric seconds, interval seconds, the interval. Numbers in
docs/performance.md come from this script.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import flamingo_eval.metrics  # noqa: F401  (registers the metrics)
import flamingo_eval.results.lines
from flamingo_eval.metrics import aggregates
from flamingo_eval.metrics.base import MetricInput
from flamingo_eval.metrics.stats import scores_ci, trials_ci
from flamingo_eval.registry import METRICS

VQAV2_VAL = 214_354


def rareact_lines(rng: np.random.Generator, clips: int = 7607, actions: int = 122, videos: int = 905) -> list[dict]:
    """Prediction lines of a RareAct-sized table: each clip annotated for one action (0/1/2/3)."""
    verbs, nouns = [f"verb{i}" for i in range(30)], [f"noun{i}" for i in range(40)]
    pairs = [(verbs[i % 30], nouns[(i // 30 * 11 + i % 30 * 3) % 40]) for i in range(actions)]  # distinct
    assert len(set(pairs)) == actions
    lines = []
    for j in range(clips):
        c = int(rng.integers(0, actions))
        ann = int(rng.choice(4, p=[0.4, 0.3, 0.15, 0.15]))
        scores = np.round(rng.random(actions) + (0.5 if ann == 1 else 0.0) * (np.arange(actions) == c), 4)
        lines.append({"shots": 0, "trial": 0, "seed": 0, "sample_id": f"clip{j}", "answer": "", "references": [],
                      "label": None, "scores": [float(s) for s in scores],
                      "extra": {"verb": pairs[c][0], "noun": pairs[c][1], "class_id": c, "annotation": ann,
                                "video_id": f"vid{int(rng.integers(0, videos))}"}})
    return lines


def bench_rareact(resamples: int) -> tuple[str, int, float, float, object]:
    """``score rareact`` on a written predictions file (no record, no data: --allow-partial)."""
    from flamingo_eval.commands.list_cmd import load_card
    from flamingo_eval.results.rescore import score_file

    lines = rareact_lines(np.random.default_rng(0))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictions.jsonl"
        path.write_text("".join(json.dumps(ln) + "\n" for ln in lines))
        metric = METRICS.get("rareact_mwap")()
        t0 = time.perf_counter()
        metric([flamingo_eval.results.lines.metric_input(ln) for ln in lines])
        t1 = time.perf_counter()
        out = score_file(load_card("rareact"), path, allow_partial=True, bootstrap=resamples)
        t2 = time.perf_counter()
    return "rareact_mwap (score rareact)", len(lines), t1 - t0, t2 - t1, out["results"][0]["ci95"]


def vqa_items(rng: np.random.Generator, n: int) -> list[MetricInput]:
    """VQAv2-like items: ten annotator answers, the prediction matching 0-10 of them."""
    pool = ["yes", "no", "2", "red", "dog", "tennis", "white", "3"]
    out = []
    for j in range(n):
        k = int(rng.integers(0, 11))
        refs = tuple([pool[j % 8]] * k + [pool[(j + 1) % 8]] * (10 - k))
        out.append(MetricInput(f"{j:07d}", pool[j % 8], refs))
    return out


def choice_items(rng: np.random.Generator, n: int, options: int, relevance: bool = False,
                 types: int = 0) -> list[MetricInput]:
    """Rank items: random option scores, the label right about half of the time."""
    scores = rng.random((n, options))
    labels = rng.integers(0, options, n)
    scores[np.arange(n), labels] += (rng.random(n) < 0.5)
    out = []
    for j in range(n):
        extra: dict = {}
        if relevance and j % 10 == 0:  # VisDial: a tenth of the rounds densely annotated
            extra["gt_relevance"] = [float(r) for r in np.round(rng.random(options) * (rng.random(options) < 0.2), 1)]
        if types:
            extra["type"] = f"t{j % types}"
        out.append(MetricInput(f"{j:07d}", "", (), label=int(labels[j]), scores=tuple(scores[j].tolist()),
                               extra=extra))
    return out


def caption_items(rng: np.random.Generator, n: int) -> list[MetricInput]:
    """Caption items with a 2,000-word vocabulary, five references each."""
    words = [f"w{i}" for i in range(2000)]

    def sentence() -> str:
        return "a " + " ".join(words[int(i)] for i in rng.zipf(1.3, 9) % 2000)

    return [MetricInput(f"{j:07d}", sentence(), tuple(sentence() for _ in range(5))) for j in range(n)]


def timed(name: str, metric: object, items: list[MetricInput], resamples: int) -> tuple[str, int, float, float, object]:
    """One metric pass, then trials_ci on the same items."""
    t0 = time.perf_counter()
    result = metric(items)  # type: ignore[operator]
    t1 = time.perf_counter()
    ci = trials_ci(metric, [items], resamples, results=[result])  # type: ignore[arg-type]
    t2 = time.perf_counter()
    return name, len(items), t1 - t0, t2 - t1, None if ci is None else [round(v, 3) for v in ci[0]]


def kept_scores(n: int, resamples: int) -> tuple[str, int, float, float, object]:
    """The runner's path: per-sample scores kept at scoring (no metric pass)."""
    rng = np.random.default_rng(1)
    ids = [f"{j:07d}" for j in range(n)]
    scores = tuple(float(s) for s in rng.choice([0.0, 30.0, 60.0, 90.0, 100.0], n))
    t0 = time.perf_counter()
    ci = scores_ci([(ids, scores)], resamples)
    return "runner scores_ci (per-sample, kept scores)", n, 0.0, time.perf_counter() - t0, ci and list(ci[0])


def cases(n: int, cider_n: int) -> dict[str, Callable[[int], tuple[str, int, float, float, object]]]:
    """Name -> benchmark of one path."""
    rng = np.random.default_rng(0)
    return {
        "rareact": bench_rareact,
        "vqa": lambda r: timed("vqa_accuracy (per-sample mean)", METRICS.get("vqa_accuracy")(), vqa_items(rng, n), r),
        "kept": lambda r: kept_scores(n, r),
        "by_type": lambda r: timed("accuracy_by_type mean_of_types", METRICS.get("accuracy_by_type")(
            headline="mean_of_types"), choice_items(rng, n, 4, types=16), r),
        "visdial": lambda r: timed("visdial (NDCG / MRR)", METRICS.get("visdial")(),
                                   choice_items(rng, n, 100, relevance=True), r),
        "roc_auc": lambda r: timed("roc_auc", METRICS.get("roc_auc")(), choice_items(rng, n, 2), r),
        "cider": lambda r: timed("cider (idf per resample)" if cider_n <= aggregates.FIXED_DF_ABOVE
                                 else "cider (whole-split idf held)", METRICS.get("cider")(),
                                 caption_items(rng, cider_n), r),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the chosen cases and print one line each."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--n", type=int, default=VQAV2_VAL)
    p.add_argument("--cider-n", type=int, default=5000)
    p.add_argument("--only", nargs="*", default=None)
    args = p.parse_args(argv)
    for name, run in cases(args.n, args.cider_n).items():
        if args.only and name not in args.only:
            continue
        label, n, metric_s, interval_s, ci = run(args.resamples)
        sys.stdout.write(f"{label:45s} n={n:7d} metric {metric_s:6.1f} s  interval {interval_s:6.1f} s  ci95 {ci}\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
