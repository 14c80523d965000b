"""What the CI gate checks besides each cell's overall paired test (docs/ci.md).

* **Coverage** (:func:`coverage_gaps`, :func:`require_coverage`): every shots setting, trial seed and sample
  of the baseline must be in the candidate, or ``compare`` exits 2 naming what is missing -- unless
  ``--allow-partial`` accepts partial coverage, and then the report says so.
* **Sample groups** (:func:`cell_checks`): when the benchmark card names ``gate.groups`` (a sample field the
  runner carries in each prediction line's ``extra``), the same paired test runs on every group of samples,
  with Holm's correction over the groups of a cell, so a loss on one group hidden by a gain on another fails.
* **Sensitivity** (:func:`cell_checks`): per cell, the smallest drop the gate detects with 80% power at its n,
  from the baseline's paired per-sample scores (``metrics.stats.detectable_drop``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from flamingo_eval.errors import UserError
from flamingo_eval.metrics import stats

POWER = 0.8
"""The detection probability of the printed detectable drop."""
_SHOWN_GAPS = 6
"""Gaps named in the one-line error; the rest are counted."""


@dataclass(frozen=True)
class GroupComparison:
    """The paired test on one group of samples of a benchmark x shots (``gate.groups``)."""

    benchmark: str
    shots: int
    field: str
    group: str
    n: int
    baseline: float
    candidate: float
    delta: float
    p: float
    """One-sided p-value for 'the drop exceeds max_drop', before the correction."""
    p_holm: float
    """``p`` after Holm's correction over the groups of this benchmark x shots."""
    verdict: str
    """REGRESSION, drop (n.s.) or ok."""


def _ids_by_trial(preds: list[dict[str, Any]]) -> dict[tuple[int, int], list[str]]:
    out: dict[tuple[int, int], list[str]] = {}
    for line in preds:
        out.setdefault((line["shots"], line["seed"]), []).append(line["sample_id"])
    return out


def coverage_gaps(bench: str, base: dict[str, Any], cand: dict[str, Any], base_preds: list[dict[str, Any]],
                  cand_preds: list[dict[str, Any]]) -> list[str]:
    """What the candidate lacks relative to the baseline: shots settings, trial seeds, samples (one phrase each)."""
    cand_results = {r["shots"]: r for r in cand["results"]}
    b_ids, c_ids = _ids_by_trial(base_preds), _ids_by_trial(cand_preds)
    gaps = []
    for rb in sorted(base["results"], key=lambda r: r["shots"]):
        k, rc = rb["shots"], cand_results.get(rb["shots"])
        if rc is None:
            gaps.append(f"{bench} {k}-shot")
            continue
        c_seeds = {t["seed"] for t in rc["trials"]}
        for seed in sorted(t["seed"] for t in rb["trials"]):
            if seed not in c_seeds:
                gaps.append(f"{bench} {k}-shot seed {seed}")
                continue
            have = set(c_ids.get((k, seed), ()))
            missing = [i for i in b_ids.get((k, seed), ()) if i not in have]
            if missing:
                gaps.append(f"{bench} {k}-shot seed {seed}: {len(missing)} of {len(b_ids[(k, seed)])} samples "
                            f"(e.g. {missing[0]})")
    return gaps


def require_coverage(gaps: list[str], allow_partial: bool, partial: list[str]) -> None:
    """Refuse a candidate that lacks part of the baseline, or record the gaps when partial coverage is allowed.

    Raises:
        UserError: ``gaps`` is not empty and ``allow_partial`` is False (one line naming the gaps).
    """
    if not gaps:
        return
    if allow_partial:
        partial.extend(gaps)
        return
    more = f"; and {len(gaps) - _SHOWN_GAPS} more" if len(gaps) > _SHOWN_GAPS else ""
    raise UserError(f"candidate does not cover the baseline: missing {'; '.join(gaps[:_SHOWN_GAPS])}{more}; rerun "
                    "the candidate with the baseline's --shots, --seeds and --limit, or pass --allow-partial to "
                    "compare on what both runs hold")


def _paired_scores(rb: dict, rc: dict, preds: tuple[list, list]) -> tuple[list[str], dict, np.ndarray, np.ndarray]:
    """The cell's paired ids, the baseline's lines by seed, and both runs' scores ``(trials, n)`` (NaN: none)."""
    k = rb["shots"]
    seeds = sorted({t["seed"] for t in rb["trials"] if t.get("value") is not None}
                   & {t["seed"] for t in rc["trials"] if t.get("value") is not None})
    idx: list[dict[int, dict[str, dict[str, Any]]]] = []
    for lines in preds:
        by_seed: dict[int, dict[str, dict[str, Any]]] = {s: {} for s in seeds}
        for line in lines:
            if line["shots"] == k and line["seed"] in by_seed:
                by_seed[line["seed"]][line["sample_id"]] = line
        idx.append(by_seed)
    ids = stats.paired_ids(idx[0], idx[1], seeds)

    def matrix(by_seed: dict) -> np.ndarray:
        return np.array([[math.nan if by_seed[s][i].get("score") is None else by_seed[s][i]["score"] for i in ids]
                         for s in seeds], dtype=np.float64).reshape(len(seeds), len(ids))

    return ids, idx[0], matrix(idx[0]), matrix(idx[1])


def cell_checks(base: dict[str, Any], rb: dict[str, Any], rc: dict[str, Any], preds: tuple[list, list],
                opts: dict[str, Any], out: Any) -> None:
    """The detectable drop of one benchmark x shots and its per-group tests, added to the comparison ``out``."""
    bench, k = base["benchmark"]["id"], rb["shots"]
    ids, b_lines, b, c = _paired_scores(rb, rc, preds)
    field = (((base.get("config") or {}).get("benchmarks") or {}).get("gate") or {}).get("groups")
    if not ids or np.isnan(b).any() or np.isnan(c).any():  # corpus metric: no per-sample scores to use
        out.detectable[(bench, k)] = math.nan
        if field:
            out.notes.append(f"{bench} {k}-shot: no per-sample scores (corpus metric), so no per-group test "
                             f"on {field} and no detectable drop")
        return
    mean_headline = not base["benchmark"].get("corpus_level")  # else the formula's mean is not the headline
    out.detectable[(bench, k)] = (stats.detectable_drop(b, opts["max_drop"], opts["alpha"], POWER) if mean_headline
                                  else math.nan)
    if not field:
        return
    first = b_lines[min(b_lines)]
    labels = [(first[i].get("extra") or {}).get(field) for i in ids]
    if any(x is None for x in labels):
        out.notes.append(f"{bench} {k}-shot: the baseline's predictions lack extra.{field} (made before the card "
                         f"named gate.groups); per-group test skipped: regenerate the baseline")
        return
    out.groups.extend(_group_tests(bench, k, field, [str(x) for x in labels], b, c, opts))


def _group_tests(bench: str, k: int, field: str, labels: list[str], b: np.ndarray, c: np.ndarray,
                 opts: dict[str, Any]) -> list[GroupComparison]:
    """The paired test on each group's per-sample differences, Holm-corrected over the groups."""
    d = (c - b).mean(axis=0)
    names = sorted(set(labels))
    masks = [np.array([x == g for x in labels]) for g in names]
    results = [stats.paired_test(d[m], opts["max_drop"], opts["alpha"], opts["n_resamples"], opts["seed"])
               for m in masks]
    adjusted = stats.holm_adjust([r[3] for r in results])
    out = []
    for g, m, r, p_holm in zip(names, masks, results, adjusted):
        delta = float(r[0])
        verdict = ("REGRESSION" if p_holm < opts["alpha"] else "drop (n.s.)") if delta < -opts["max_drop"] else "ok"
        out.append(GroupComparison(bench, k, field, g, int(m.sum()), float(b[:, m].mean()), float(c[:, m].mean()),
                                   delta, float(r[3]), float(p_holm), verdict))
    return out


def format_checks(groups: list[GroupComparison], partial: list[str], max_drop: float) -> list[str]:
    """The report's per-group table and its partial-coverage line (empty when neither applies)."""
    lines: list[str] = []
    if groups:
        lines += ["", "Per group of samples (card gate.groups; p Holm-corrected over each cell's groups):", "",
                  f"| benchmark | shots | group | n | baseline | candidate | delta | p(drop>{max_drop:g}) | p Holm "
                  "| verdict |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
        lines += [f"| {g.benchmark} | {g.shots} | {g.field}={g.group} | {g.n} | {g.baseline:.2f} | "
                  f"{g.candidate:.2f} | {g.delta:+.2f} | {g.p:.4f} | {g.p_holm:.4f} | {g.verdict} |" for g in groups]
    if partial:
        lines += ["", f"PARTIAL COVERAGE (--allow-partial): compared only on what both runs hold; the candidate "
                      f"lacks {'; '.join(partial)}."]
    return lines
