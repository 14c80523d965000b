"""Paired comparison of two runs: did the candidate really get worse than the baseline?

For every benchmark x shots both runs hold, samples are paired by (trial seed, sample id) and must have
been shown the same demos. The per-sample difference ``d = candidate - baseline`` (metric points,
averaged over the common trials) is the unit of resampling:

* delta = mean(d); CI = paired bootstrap percentile interval at level 1 - 2*alpha (the two-sided
  interval that matches a one-sided test at alpha);
* p = one-sided sign-flip permutation p-value for H0: delta >= -max_drop against H1: delta < -max_drop
  (signs flipped on ``d + max_drop``; exact enumeration when 2**n <= n_resamples);
* verdict ``REGRESSION`` when delta < -max_drop and p < alpha -- only then does the gate fail.

Metrics whose headline is not a per-sample mean (CIDEr, AUC, mean of types, ...) are bootstrapped on their
own headline, recomputed on each resample of both runs with the aggregates of the record's ``ci95``
(``metrics/aggregates.py``), when the metric is registered (``flamingo_eval.registry.METRICS``); otherwise
trial values are compared with a per-trial sign-flip test, which cannot reach significance with few trials
(said in the notes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flamingo_eval.errors import UserError
from flamingo_eval.metrics import stats
from flamingo_eval.metrics.base import Metric
from flamingo_eval.metrics.stats import paired_ids
from flamingo_eval.results.gate_checks import (
    GroupComparison,
    cell_checks,
    coverage_gaps,
    format_checks,
    require_coverage,
)
from flamingo_eval.results.lines import metric_input
from flamingo_eval.results.records import RECORD_FILE, find_records, load_predictions, load_record

_TestResult = tuple[float, float, float, float, str]
"""(delta, ci_lo, ci_hi, p, verdict)."""


@dataclass(frozen=True)
class CellComparison:
    """The paired test for one benchmark x shots."""

    benchmark: str
    shots: int
    sampler: str
    n: int
    """Paired samples (or trials, for the per-trial fallback)."""
    n_trials: int
    baseline: float
    candidate: float
    delta: float
    """candidate - baseline, metric points (0-100)."""
    ci_lo: float
    ci_hi: float
    p: float
    """One-sided p-value for 'the drop exceeds max_drop'."""
    verdict: str
    """REGRESSION, drop (n.s.), ok, or improved."""
    method: str


@dataclass
class Comparison:
    """All cells of a comparison plus the gate parameters."""

    baseline: str
    candidate: str
    max_drop: float
    alpha: float
    cells: list[CellComparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    groups: list[GroupComparison] = field(default_factory=list)
    """Per-group tests of the cells whose card names ``gate.groups`` (``results/gate_checks.py``)."""
    detectable: dict[tuple[str, int], float] = field(default_factory=dict)
    """(benchmark, shots) -> the smallest drop detected with 80% power (NaN: not computable)."""
    partial: list[str] = field(default_factory=list)
    """What the candidate lacks relative to the baseline, when ``allow_partial`` accepted it."""

    @property
    def failed(self) -> bool:
        """True when any cell, or any group of a cell, is a significant drop larger than ``max_drop``."""
        return any(c.verdict == "REGRESSION" for c in self.cells) or any(g.verdict == "REGRESSION" for g in self.groups)


def _verdict(delta: float, p_drop: float, p_gain: float, max_drop: float, alpha: float) -> str:
    if delta < -max_drop and p_drop < alpha:
        return "REGRESSION"
    if delta > max_drop and p_gain < alpha:
        return "improved"
    return "drop (n.s.)" if delta < -max_drop else "ok"


def paired_test(d: np.ndarray, max_drop: float, alpha: float, n_resamples: int, seed: int) -> _TestResult:
    """Paired test on per-sample differences ``d`` (candidate - baseline), statistics from ``metrics.stats``.

    Returns:
        (delta, ci_lo, ci_hi, p, verdict) -- see the module docstring.
    """
    delta, lo, hi, p_drop, p_gain = stats.paired_test(d, max_drop, alpha, n_resamples, seed)
    return delta, lo, hi, p_drop, _verdict(delta, p_drop, p_gain, max_drop, alpha)


def _records_for(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: not found (expected a run directory, a {RECORD_FILE} path, or a directory of runs)")
    if p.is_file() or (p / RECORD_FILE).is_file():
        return [load_record(p)]
    paths = find_records(p)
    if not paths:
        raise UserError(f"{p}: no {RECORD_FILE} found")
    return [load_record(x) for x in paths]


def _check_comparable(base: dict[str, Any], cand: dict[str, Any]) -> None:
    b, c = base["benchmark"], cand["benchmark"]
    for key in ("id", "version", "split", "demo_split", "metric", "metric_args"):
        if b.get(key) != c.get(key):
            raise UserError(f"records not comparable: benchmark {key} differs "
                            f"(baseline {b.get(key)!r}, candidate {c.get(key)!r})")


def _index(preds: list[dict[str, Any]], shots: int, seeds: list[int]) -> dict[int, dict[str, dict[str, Any]]]:
    out: dict[int, dict[str, dict[str, Any]]] = {s: {} for s in seeds}
    for line in preds:
        if line["shots"] == shots and line["seed"] in out:
            out[line["seed"]][line["sample_id"]] = line
    return out


def _pairs(base_preds: list, cand_preds: list, bench: str, shots: int, seeds: list[int], notes: list[str]
           ) -> tuple[list[str], dict, dict]:
    """Common sample ids over all common seeds, after checking that their demos match."""
    bi, ci = _index(base_preds, shots, seeds), _index(cand_preds, shots, seeds)
    paired = paired_ids(bi, ci, seeds)
    if not paired:
        raise UserError(f"records not comparable: no paired predictions for {bench} {shots}-shot "
                        f"(no sample id present in both runs for seeds {seeds})")
    for s in seeds:
        for sid in paired:
            if list(bi[s][sid].get("demo_ids") or []) != list(ci[s][sid].get("demo_ids") or []):
                raise UserError(f"records not comparable: demo ids differ for {bench} {shots}-shot seed {s} "
                                f"sample {sid} (baseline {bi[s][sid].get('demo_ids')}, "
                                f"candidate {ci[s][sid].get('demo_ids')})")
    n_b, n_c = [len(bi[s]) for s in seeds], [len(ci[s]) for s in seeds]
    if any(n != len(paired) for n in n_b + n_c):
        notes.append(f"{bench} {shots}-shot: paired on {len(paired)} samples per trial "
                     f"(baseline has {_counts(n_b, seeds)}, candidate {_counts(n_c, seeds)}); unpaired samples "
                     "ignored, and the baseline and candidate values shown are those of the paired samples.")
    return paired, bi, ci


def _counts(counts: list[int], seeds: list[int]) -> str:
    """'200' when every trial has the same count, else '200 (seed 0), 180 (seed 1)'."""
    if len(set(counts)) == 1:
        return str(counts[0])
    return ", ".join(f"{n} (seed {s})" for n, s in zip(counts, seeds))


def _corpus_metric(record: dict[str, Any]) -> Metric | None:
    """The record's metric (registered, with its args), or None if it is not available here."""
    try:
        import flamingo_eval.metrics  # noqa: F401  (registers the metrics, when the package has them)
        from flamingo_eval.registry import METRICS

        b = record["benchmark"]
        return METRICS.get(b["metric"])(**(b.get("metric_args") or {}))  # type: ignore[no-any-return]
    except (ImportError, UserError, TypeError):
        return None


def _corpus_cell(metric: Metric, ids: list[str], bi: dict, ci: dict, seeds: list[int],
                 max_drop: float, alpha: float, n_resamples: int, seed: int) -> tuple[_TestResult, float, float]:
    """Paired bootstrap of the metric's own headline, capped at 1000 resamples: the draws and vectorised
    aggregates of the record's ``ci95`` (``stats.paired_aggregate_deltas``), both runs on the same draw.

    Returns:
        The test result and the baseline and candidate values on the paired samples (mean over seeds).
    """
    base = [[metric_input(bi[s][i]) for i in ids] for s in seeds]
    cand = [[metric_input(ci[s][i]) for i in ids] for s in seeds]
    base_value, cand_value, boot = stats.paired_aggregate_deltas(metric, base, cand, min(n_resamples, 1000), seed)
    if boot.size == 0:
        raise UserError("bootstrap: the statistic is undefined on every resample")
    observed = cand_value - base_value
    lo, hi = stats.interval(boot, 1.0 - 2.0 * alpha)
    p_drop, p_gain = stats.basic_bootstrap_pvalues(boot, observed, max_drop)
    res = (observed, lo, hi, p_drop, _verdict(observed, p_drop, p_gain, max_drop, alpha))
    return res, base_value, cand_value


def _compare_shots(base: dict, cand: dict, rb: dict, rc: dict, preds: tuple[list, list], opts: dict,
                   notes: list[str]) -> CellComparison:
    bench, shots = base["benchmark"]["id"], rb["shots"]
    b_trials = {t["seed"]: float(t["value"]) for t in rb["trials"] if t.get("value") is not None}
    c_trials = {t["seed"]: float(t["value"]) for t in rc["trials"] if t.get("value") is not None}
    seeds = sorted(set(b_trials) & set(c_trials))
    if not seeds:
        raise UserError(f"records not comparable: no common trial seeds for {bench} {shots}-shot "
                        f"(baseline {sorted(b_trials)}, candidate {sorted(c_trials)}), so demos differ")
    ids, bi, ci = _pairs(preds[0], preds[1], bench, shots, seeds, notes)
    per_sample = not base["benchmark"].get("corpus_level") and all(
        bi[s][i].get("score") is not None and ci[s][i].get("score") is not None for s in seeds for i in ids)
    args = (opts["max_drop"], opts["alpha"], opts["n_resamples"], opts["seed"])
    res: _TestResult
    if per_sample:
        b_scores = np.array([[bi[s][i]["score"] for i in ids] for s in seeds], float)
        c_scores = np.array([[ci[s][i]["score"] for i in ids] for s in seeds], float)
        base_value, cand_value = float(b_scores.mean()), float(c_scores.mean())
        res, method, n = paired_test((c_scores - b_scores).mean(0), *args), "paired bootstrap + sign-flip", len(ids)
    elif (metric := _corpus_metric(base)) is not None:
        (res, base_value, cand_value), method, n = _corpus_cell(metric, ids, bi, ci, seeds, *args), \
            "corpus bootstrap", len(ids)
    else:
        _trial_values_are_paired(bench, shots, ids, bi, ci, seeds, base["benchmark"]["metric"])
        base_value = float(np.mean([b_trials[s] for s in seeds]))
        cand_value = float(np.mean([c_trials[s] for s in seeds]))
        d = np.array([c_trials[s] - b_trials[s] for s in seeds])
        n, method = len(seeds), "per-trial (corpus metric)"
        if len(d) > 1:
            res = paired_test(d, *args)
        else:
            res = (float(d[0]), math.nan, math.nan, 1.0, "drop (n.s.)" if d[0] < -opts["max_drop"] else "ok")
        notes.append(f"{bench} {shots}-shot: corpus metric '{base['benchmark']['metric']}' has no per-sample "
                     f"scores and is not registered here; compared {len(seeds)} trial value(s) only, "
                     "which cannot reach significance with few trials.")
    return CellComparison(bench, shots, str(rb.get("sampler", "random")), n, len(seeds), base_value, cand_value,
                          float(res[0]), float(res[1]), float(res[2]), float(res[3]), str(res[4]), method)


def _trial_values_are_paired(bench: str, shots: int, ids: list[str], bi: dict, ci: dict, seeds: list[int],
                             metric: str) -> None:
    """Trial values may stand in for the paired samples only when both runs scored exactly those samples."""
    if all(len(bi[s]) == len(ids) and len(ci[s]) == len(ids) for s in seeds):
        return
    raise UserError(f"records not comparable: {bench} {shots}-shot: the runs scored different samples and the "
                    f"corpus metric '{metric}' is not registered here, so it cannot be recomputed on the "
                    f"{len(ids)} paired samples; compare runs of the same --limit, or install the metric")


def _compare_records(base: dict, cand: dict, opts: dict, out: Comparison) -> None:
    _check_comparable(base, cand)
    bench = base["benchmark"]["id"]
    cand_results = {r["shots"]: r for r in cand["results"]}
    preds = (load_predictions(Path(base["_path"]).parent), load_predictions(Path(cand["_path"]).parent))
    require_coverage(coverage_gaps(bench, base, cand, *preds), opts["allow_partial"], out.partial)
    n_cells = n_unscored = 0
    for rb in sorted(base["results"], key=lambda r: r["shots"]):
        rc = cand_results.get(rb["shots"])
        if rc is None:
            out.notes.append(f"{bench} {rb['shots']}-shot: not in the candidate run; skipped.")
            continue
        unscored = [side for side, r in (("baseline", rb), ("candidate", rc))
                    if not any(t.get("value") is not None for t in r["trials"])]
        if unscored:
            out.notes.append(f"{bench} {rb['shots']}-shot: {' and '.join(unscored)} unscored (split "
                             f"'{base['benchmark']['split']}' has no annotations: submission files only); skipped.")
            n_unscored += 1
            continue
        sb, sc = rb.get("sampler", "random"), rc.get("sampler", "random")
        if sb != sc:
            raise UserError(f"records not comparable: demo sampler differs for {bench} {rb['shots']}-shot "
                            f"(baseline {sb!r}, candidate {sc!r})")
        out.cells.append(_compare_shots(base, cand, rb, rc, preds, opts, out.notes))
        cell_checks(base, rb, rc, preds, opts, out)
        n_cells += 1
    if n_cells == 0 and n_unscored == 0:
        raise UserError(f"records not comparable: no shots setting of {bench} is in both runs")


def compare_runs(baseline: str | Path, candidate: str | Path, *, max_drop: float = 1.0, alpha: float = 0.05,
                 n_resamples: int = 10_000, seed: int = 0, allow_partial: bool = False) -> Comparison:
    """Compare two runs (run dirs, record.json paths, or directories of runs paired by benchmark).

    ``allow_partial``: accept a candidate lacking shots settings, trial seeds or samples of the baseline
    (compared on what both hold; the report says so); without it such a candidate is an error.

    Raises:
        UserError: Missing/invalid files, records that cannot be paired, or (without ``allow_partial``) a
            candidate that does not cover the baseline (the CLI exits 2).
    """
    if not 0 < alpha < 0.5:
        raise UserError(f"--alpha must be in (0, 0.5), got {alpha}")
    if not (math.isfinite(max_drop) and max_drop >= 0) or n_resamples < 100:  # NaN compares False: refuse it
        raise UserError(f"--max-drop must be a finite number >= 0 (got {max_drop}) and --n-resamples >= 100 "
                        f"(got {n_resamples})")
    sides = []
    for label, path in (("baseline", baseline), ("candidate", candidate)):
        by_bench: dict[str, dict[str, Any]] = {}
        for rec in _records_for(path):
            bid = rec["benchmark"]["id"]
            if bid in by_bench:
                raise UserError(f"{path}: {label} holds several records for benchmark '{bid}' "
                                f"({by_bench[bid]['_path']}, {rec['_path']}); pass one run directory")
            by_bench[bid] = rec
        sides.append(by_bench)
    base_by, cand_by = sides
    out = Comparison(str(baseline), str(candidate), max_drop, alpha)
    require_coverage([f"benchmark {b}" for b in sorted(set(base_by) - set(cand_by))], allow_partial, out.partial)
    opts = {"max_drop": max_drop, "alpha": alpha, "n_resamples": n_resamples, "seed": seed,
            "allow_partial": allow_partial}
    for bid in sorted(set(base_by) & set(cand_by)):
        _compare_records(base_by[bid], cand_by[bid], opts, out)
    if not out.cells:
        raise UserError("nothing to compare: every shared setting is unscored (annotation-less split, "
                        "submission files only); score them on the benchmark server")
    out.notes += [f"{b}: only in the candidate; not compared." for b in sorted(set(cand_by) - set(base_by))]
    return out


def format_comparison(cmp: Comparison) -> str:
    """A Markdown table (readable as plain text) plus notes and the gate's one-line outcome."""
    level = round(100 * (1 - 2 * cmp.alpha))
    lines = [f"baseline:  {cmp.baseline}", f"candidate: {cmp.candidate}", "",
             f"| benchmark | shots | n | baseline | candidate | delta | {level}% CI | p(drop>{cmp.max_drop:g}) "
             "| detectable drop | verdict |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for c in cmp.cells:
        shots = f"{c.shots}" if c.sampler == "random" else f"{c.shots} ({c.sampler})"
        ci = "n/a" if math.isnan(c.ci_lo) else f"[{c.ci_lo:+.2f}, {c.ci_hi:+.2f}]"
        found = cmp.detectable.get((c.benchmark, c.shots), math.nan)
        lines.append(f"| {c.benchmark} | {shots} | {c.n} | {c.baseline:.2f} | {c.candidate:.2f} | "
                     f"{c.delta:+.2f} | {ci} | {c.p:.4f} | {'n/a' if math.isnan(found) else f'{found:.1f}'} "
                     f"| {c.verdict} |")
    methods = sorted({c.method for c in cmp.cells})
    lines += ["", f"Test: {', '.join(methods)}; fails when delta < -{cmp.max_drop:g} points with "
                  f"p < {cmp.alpha:g} (one-sided). Detectable drop: the smallest drop this test catches with 80% "
                  "power at the cell's n, from the baseline's per-sample scores (docs/ci.md)."]
    lines += format_checks(cmp.groups, cmp.partial, cmp.max_drop)
    lines += [f"Note: {n}" for n in cmp.notes]
    bad = [f"{c.benchmark} {c.shots}-shot" for c in cmp.cells if c.verdict == "REGRESSION"]
    bad += [f"{g.benchmark} {g.shots}-shot {g.field}={g.group}" for g in cmp.groups if g.verdict == "REGRESSION"]
    verdict = f"FAIL: significant regression on {', '.join(bad)}" if bad else "PASS: no significant regression"
    lines.append(verdict + (" (PARTIAL COVERAGE: see above)" if cmp.partial else ""))
    return "\n".join(lines) + "\n"
