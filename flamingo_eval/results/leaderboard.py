"""Aggregate run records into a leaderboard: rows = model checkpoints, columns = benchmark x shots.

Rules (documented in docs/results.md):

* Model label = ``model.name`` (else ``model.id``); when one label covers several weight fingerprints,
  each gets its first 8 fingerprint hex digits appended, so checkpoints never merge silently.
* Several records for one (model, benchmark@version/split, shots, sampler) cell are **merged by trial
  seed** only when their configs agree apart from the seeds (:func:`config_key`): trials with distinct
  seeds are pooled; when two records hold the same seed the newest record (``created``) wins. Every merge
  or override is listed in the notes. Records of one model and benchmark whose configs differ otherwise
  (``--limit``, prompts, precision, ...) become separate rows labelled with what differs, e.g.
  ``mini [run.limit=40]`` -- a smoke run never replaces trials of a full run.
* A cell holding trials of an unfinished run (``status: running``) is marked ``*`` and listed in a note.
* A cell shows mean ± std over trials (population std, ddof=0, as OpenFlamingo reports; ``ddof=1`` on
  request) or, with ``ci=True``, mean [95% CI]: the record's ``ci95`` (percentile bootstrap over samples
  x trials, ``metrics.stats.trials_ci``), its ``ci95_method`` named in the table note; a cell pooling trials of
  several runs has none (noted).
All statistics come from ``flamingo_eval.metrics.stats``. The table type and its renderings (Markdown,
LaTeX, CSV, HTML) are ``results/leaderboard_table.py``, re-exported here.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pandas as pd

from flamingo_eval.errors import UserError
from flamingo_eval.metrics.stats import trial_std, trial_summary
from flamingo_eval.results.configs import comparable_config, config_key, config_labels
from flamingo_eval.results.leaderboard_table import FORMATS, SCALES, Leaderboard, latex_escape, render_leaderboard

__all__ = ["FORMATS", "SCALES", "Leaderboard", "build_leaderboard", "latex_escape", "model_labels",
           "render_leaderboard", "row_labels"]

def _short_fp(fp: str | None) -> str:
    return (fp or "unknown").split(":")[-1][:8]


def model_labels(records: list[dict[str, Any]]) -> list[str]:
    """Display label per record: name, plus a short fingerprint when a name covers several checkpoints."""
    names = [r["model"].get("name") or r["model"]["id"] for r in records]
    fps: dict[str, set[str | None]] = defaultdict(set)
    for name, r in zip(names, records):
        fps[name].add(r["model"].get("fingerprint"))
    return [
        f"{name} ({_short_fp(r['model'].get('fingerprint'))})" if len(fps[name]) > 1 else name
        for name, r in zip(names, records)
    ]


def _bench_labels(records: list[dict[str, Any]]) -> list[str]:
    """Benchmark id, plus ``@version`` / ``(split)`` only where the records disagree on them."""
    versions: dict[str, set[str]] = defaultdict(set)
    splits: dict[str, set[str]] = defaultdict(set)
    for r in records:
        b = r["benchmark"]
        versions[b["id"]].add(b["version"])
        splits[b["id"]].add(b["split"])
    out = []
    for r in records:
        b = r["benchmark"]
        label = b["id"]
        if len(versions[b["id"]]) > 1:
            label += f"@{b['version']}"
        if len(splits[b["id"]]) > 1:
            label += f" ({b['split']})"
        out.append(label)
    return out


def row_labels(records: list[dict[str, Any]], notes: list[str] | None = None) -> list[str]:
    """Model label per record, plus ``[what differs]`` where one model's runs of one benchmark disagree
    on anything but seeds (so they never share a cell); each such split is described in ``notes``."""
    models, benches = model_labels(records), _bench_labels(records)
    keys = [config_key(r) for r in records]
    configs: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for rec, model, bench, key in zip(records, models, benches, keys):
        configs[(model, bench)][key] = comparable_config(rec)
    labels = {mb: config_labels(c) for mb, c in configs.items() if len(c) > 1}
    for (model, bench), by_key in sorted(labels.items()):
        rows = ", ".join(f"{model} [{v}]" for v in sorted(by_key.values()))
        (notes if notes is not None else []).append(
            f"{model} / {bench}: runs with different configurations (not only seeds) are never merged; "
            f"shown as separate rows: {rows}.")
    return [f"{m} [{labels[(m, b)][k]}]" if (m, b) in labels else m for m, b, k in zip(models, benches, keys)]


def _shots_label(shots: int, sampler: str) -> str:
    return f"{shots}-shot" if sampler == "random" else f"{shots}-shot ({sampler})"


def _merge_trials(entries: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[dict[int, Any], list[str]]:
    """Pool trials by seed over (record, result) pairs; newer records override older ones."""
    trials: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    overridden: list[str] = []
    for rec, res in sorted(entries, key=lambda e: (e[0]["created"], e[0]["run_id"])):
        for t in res["trials"]:
            if t.get("value") is None:  # unscored (submission file for an annotation-less split)
                continue
            if t["seed"] in trials:
                overridden.append(f"seed {t['seed']} of run {trials[t['seed']][0]['run_id']}")
            trials[t["seed"]] = (rec, t)
    return trials, overridden


OLD_CI_METHOD = "bootstrap: samples, first-seen id order (older record)"
"""The ``ci_method`` of a recorded ``ci95`` without ``ci95_method`` (records written before issue 26)."""


def _recorded_ci(entries: list, trials: dict[int, Any], where: str,
                 notes: list[str]) -> tuple[float, float, str | None]:
    """The record's ``ci95`` and ``ci95_method`` when the cell's trials are exactly one result's trials, else
    NaNs (with a note when trials of several runs were merged: their interval was never computed)."""
    nan = (float("nan"), float("nan"), None)
    for _rec, res in entries:
        if sorted(id(t) for _, t in trials.values()) == sorted(id(t) for t in res["trials"]
                                                                if t.get("value") is not None):
            ci = res.get("ci95")
            return (float(ci[0]), float(ci[1]), str(res.get("ci95_method") or OLD_CI_METHOD)) if ci else nan
    notes.append(f"{where}: no 95% CI shown: its trials are not one run's result; score their pooled "
                 "predictions (`flamingo-eval score`) for one.")
    return nan


def _cell(key: tuple, entries: list, ddof: int, notes: list[str]) -> dict[str, Any]:
    model, bench, shots, sampler = key[0], key[1], key[4], key[5]
    trials, overridden = _merge_trials(entries)
    seeds = sorted(trials)
    values = [float(trials[s][1]["value"]) for s in seeds]
    runs = sorted({rec["run_id"] for rec, _ in trials.values()})
    where = f"{model} / {bench} {_shots_label(shots, sampler)}"
    if overridden:
        newest = max(entries, key=lambda e: e[0]["created"])[0]["run_id"]
        notes.append(f"{where}: newest run {newest} supersedes {', '.join(overridden)}.")
    if len(runs) > 1:
        notes.append(f"{where}: trials merged from {len(runs)} runs ({', '.join(runs)}); seeds {seeds}.")
    unfinished = sorted({rec["run_id"] for rec, _ in trials.values() if rec.get("status") == "running"})
    lo, hi, ci_method = _recorded_ci(entries, trials, where, notes)
    return {
        "model": model, "benchmark": bench, "shots": shots, "sampler": sampler,
        "column": (bench, _shots_label(shots, sampler)), "metric": key[6],
        "n_trials": len(values), "seeds": seeds, "mean": trial_summary(values)["mean"],
        "std": trial_std(values, ddof),
        "ci_lo": lo, "ci_hi": hi, "ci_method": ci_method, "runs": runs, "unfinished": unfinished,
    }


def build_leaderboard(records: list[dict[str, Any]], ddof: int = 0) -> Leaderboard:
    """Aggregate validated records (see :func:`~flamingo_eval.results.records.load_records`).

    Args:
        records: Parsed run records.
        ddof: Delta degrees of freedom for the std over trials (0 = population, as OpenFlamingo).

    Raises:
        UserError: No records, or no results in them.
    """
    if not records:
        raise UserError("no run records found (looked for record.json files)")
    groups: dict[tuple, list] = defaultdict(list)
    notes: list[str] = []
    for rec, model, bench in zip(records, row_labels(records, notes), _bench_labels(records)):
        b = rec["benchmark"]
        for res in rec["results"]:
            key = (model, bench, b["version"], b["split"], res["shots"], str(res.get("sampler", "random")),
                   b["metric"], config_key(rec))
            groups[key].append((rec, res))
    if not groups:
        raise UserError("the run records hold no results")
    rows = []
    for key, entries in sorted(groups.items(), key=lambda kv: kv[0][:6]):
        if not any(t.get("value") is not None for _, res in entries for t in res["trials"]):
            n = sum(len(res["trials"]) for _, res in entries)
            notes.append(f"{key[0]} / {key[1]} {_shots_label(key[4], key[5])}: {n} unscored trial(s) "
                         f"(split '{key[3]}' has no annotations; submit the files to the benchmark server); "
                         "not shown.")
            continue
        rows.append(_cell(key, entries, ddof, notes))
    if not rows:
        raise UserError("the run records hold no scored results (only submission files for annotation-less "
                        "splits); score them on the benchmark server")
    cells = pd.DataFrame(rows)
    order = cells.sort_values(["benchmark", "shots", "sampler"])["column"]
    columns = list(dict.fromkeys(order))
    return Leaderboard(cells=cells, models=sorted(cells["model"].unique()), columns=columns,
                       notes=notes, n_records=len(records), ddof=ddof)
