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
  x trials, ``metrics.stats.trials_ci``); a cell pooling trials of several runs has none (noted).
All statistics come from ``flamingo_eval.metrics.stats``.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from flamingo_eval.errors import UserError
from flamingo_eval.metrics.stats import trial_std, trial_summary
from flamingo_eval.results.configs import comparable_config, config_key, config_labels

FORMATS = ("md", "latex", "csv", "html")
SCALES = {"percent": 1.0, "unit": 0.01}
"""Display scales: metric points 0-100 (records' native scale) or fractions 0-1."""


@dataclass
class Leaderboard:
    """Aggregated cells plus what a reader needs to interpret them."""

    cells: pd.DataFrame
    """Tidy table, one row per (model, column): model, benchmark, shots, sampler, column, metric,
    n_trials, seeds, mean, std, ci_lo, ci_hi, runs."""
    models: list[str]
    columns: list[tuple[str, str]]
    """(benchmark label, shots label) in display order."""
    notes: list[str] = field(default_factory=list)
    n_records: int = 0
    ddof: int = 0


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


def _recorded_ci(entries: list, trials: dict[int, Any], where: str, notes: list[str]) -> tuple[float, float]:
    """The record's ``ci95`` when the cell's trials are exactly one result's trials, else NaNs (with a note
    when trials of several runs were merged: their interval was never computed)."""
    nan = (float("nan"), float("nan"))
    for _rec, res in entries:
        if sorted(id(t) for _, t in trials.values()) == sorted(id(t) for t in res["trials"]
                                                                if t.get("value") is not None):
            ci = res.get("ci95")
            return (float(ci[0]), float(ci[1])) if ci else nan
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
    lo, hi = _recorded_ci(entries, trials, where, notes)
    return {
        "model": model, "benchmark": bench, "shots": shots, "sampler": sampler,
        "column": (bench, _shots_label(shots, sampler)), "metric": key[6],
        "n_trials": len(values), "seeds": seeds, "mean": trial_summary(values)["mean"],
        "std": trial_std(values, ddof),
        "ci_lo": lo, "ci_hi": hi, "runs": runs, "unfinished": unfinished,
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


def _lookup(lb: Leaderboard) -> dict[tuple[str, tuple[str, str]], dict[str, Any]]:
    return {(row["model"], row["column"]): row for row in lb.cells.to_dict("records")}


def _best(lb: Leaderboard, cells: dict, decimals: int, factor: float) -> set[tuple[str, tuple[str, str]]]:
    """Cells holding the best displayed mean of their column (ties all bold; needs >= 2 entries)."""
    best = set()
    for col in lb.columns:
        shown = {m: round(cells[(m, col)]["mean"] * factor, decimals) for m in lb.models if (m, col) in cells}
        if len(shown) >= 2:
            top = max(shown.values())
            best |= {(m, col) for m, v in shown.items() if v == top}
    return best


def _fmt(x: float, factor: float, decimals: int) -> str:
    return f"{x * factor:.{decimals}f}"


def _spread(row: dict[str, Any], ci: bool, factor: float, decimals: int) -> str | None:
    """The part after the mean: std, or the CI as 'lo, hi'; None when there is nothing to show."""
    if ci:
        if math.isnan(row["ci_lo"]):
            return None
        return f"{_fmt(row['ci_lo'], factor, decimals)}, {_fmt(row['ci_hi'], factor, decimals)}"
    if row["n_trials"] < 2:
        return None
    return _fmt(row["std"], factor, decimals)


def _star(row: dict[str, Any]) -> str:
    """``*`` for a cell holding trials of an unfinished run (explained in the legend)."""
    return "*" if row.get("unfinished") else ""


def _legend(lb: Leaderboard, ci: bool, scale: str, missing: str) -> list[str]:
    spread = ("mean [95% CI]: the run's percentile bootstrap over samples x trials (record ci95); "
              "cells without [ ] have no recorded interval"
              if ci else f"mean ± std over trials (ddof={lb.ddof}); cells without ± have one trial")
    metrics = sorted({(row["benchmark"], row["metric"]) for row in lb.cells.to_dict("records")})
    unit = "0-100" if scale == "percent" else "0-1"
    unfinished = sorted({r for row in lb.cells.to_dict("records") for r in row.get("unfinished") or ()})
    star = ([f"*: includes trials of unfinished runs (status: running), whose values may still change: "
             f"{', '.join(unfinished)}."] if unfinished else [])
    return [
        f"Cells: {spread}. Bold: best in column. {missing}: not evaluated.",
        "Metrics (" + unit + "): " + "; ".join(f"{b}: {m}" for b, m in metrics) + ".",
        *star,
        *lb.notes,
        f"Generated by `flamingo-eval leaderboard` from {lb.n_records} run record(s).",
    ]


def _groups(columns: list[tuple[str, str]]) -> list[tuple[str, int]]:
    """Consecutive (benchmark, span) runs for grouped headers."""
    out: list[tuple[str, int]] = []
    for bench, _ in columns:
        if out and out[-1][0] == bench:
            out[-1] = (bench, out[-1][1] + 1)
        else:
            out.append((bench, 1))
    return out


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters in plain text (model and benchmark names)."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def _render_md(lb: Leaderboard, ci: bool, factor: float, decimals: int, scale: str) -> str:
    cells = _lookup(lb)
    best = _best(lb, cells, decimals, factor)
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| Model | " + " | ".join(esc(f"{b} {s}") for b, s in lb.columns) + " |",
             "|---|" + "---:|" * len(lb.columns)]
    for m in lb.models:
        out = []
        for col in lb.columns:
            row = cells.get((m, col))
            if row is None:
                out.append("—")
                continue
            mean = _fmt(row["mean"], factor, decimals)
            mean = f"**{mean}**" if (m, col) in best else mean
            spread = _spread(row, ci, factor, decimals)
            text = mean if spread is None else (f"{mean} [{spread}]" if ci else f"{mean} ± {spread}")
            out.append(text + _star(row))
        lines.append(f"| {esc(m)} | " + " | ".join(out) + " |")
    notes = "\n".join(f"- {n}" for n in _legend(lb, ci, scale, "—"))
    return "# Leaderboard\n\n" + "\n".join(lines) + "\n\n" + notes + "\n"


def _render_latex(lb: Leaderboard, ci: bool, factor: float, decimals: int, scale: str) -> str:
    cells = _lookup(lb)
    best = _best(lb, cells, decimals, factor)
    groups = _groups(lb.columns)
    spec = "l" + "".join(" " + "c" * span for _, span in groups)
    head = " & ".join(rf"\multicolumn{{{span}}}{{c}}{{{latex_escape(b)}}}" for b, span in groups)
    rules, start = [], 2
    for _, span in groups:
        rules.append(rf"\cmidrule(lr){{{start}-{start + span - 1}}}")
        start += span
    lines = ["% Requires \\usepackage{booktabs}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             rf" & {head} \\", " ".join(rules),
             "Model & " + " & ".join(latex_escape(s) for _, s in lb.columns) + r" \\", r"\midrule"]
    for m in lb.models:
        out = []
        for col in lb.columns:
            row = cells.get((m, col))
            if row is None:
                out.append("--")
                continue
            mean = _fmt(row["mean"], factor, decimals)
            mean = rf"\textbf{{{mean}}}" if (m, col) in best else mean
            spread = _spread(row, ci, factor, decimals)
            if spread is not None:
                mean += rf"\,{{\scriptsize [{spread}]}}" if ci else rf"\,{{\scriptsize$\pm${spread}}}"
            out.append(mean + _star(row))
        lines.append(latex_escape(m) + " & " + " & ".join(out) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [f"% {n}".replace("±", "+/-") for n in _legend(lb, ci, scale, "--")]
    return "\n".join(lines) + "\n"


def _render_csv(lb: Leaderboard, ci: bool, factor: float, decimals: int) -> str:
    cells = _lookup(lb)
    fields = ["mean", "ci_lo", "ci_hi"] if ci else ["mean", "std"]
    data: dict[str, list[Any]] = {"model": list(lb.models)}
    for b, s in lb.columns:
        for f in [*fields, "n_trials", "unfinished"]:
            vals = []
            for m in lb.models:
                row = cells.get((m, (b, s)))
                v = None if row is None else (int(bool(row[f])) if f == "unfinished" else row[f])
                keep = v is None or f in ("n_trials", "unfinished") or math.isnan(v)
                vals.append(v if keep or v is None else round(v * factor, 6))
            data[f"{b} {s} {f}"] = pd.array(vals, dtype="Int64") if f in ("n_trials", "unfinished") else vals
    return pd.DataFrame(data).to_csv(index=False, lineterminator="\n")


_CSS = ("body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "th,td{padding:.3em .8em;text-align:right}th:first-child,td:first-child{text-align:left}"
        "thead tr:last-child th{border-bottom:1px solid #333}table{border-top:2px solid #333;"
        "border-bottom:2px solid #333}.missing{color:#999}li{margin:.2em 0}")


def _render_html(lb: Leaderboard, ci: bool, factor: float, decimals: int, scale: str) -> str:
    cells = _lookup(lb)
    best = _best(lb, cells, decimals, factor)
    e = html.escape
    top = "".join(f'<th colspan="{span}">{e(b)}</th>' for b, span in _groups(lb.columns))
    sub = "".join(f"<th>{e(s)}</th>" for _, s in lb.columns)
    body = []
    for m in lb.models:
        tds = []
        for col in lb.columns:
            row = cells.get((m, col))
            if row is None:
                tds.append('<td class="missing">—</td>')
                continue
            mean = e(_fmt(row["mean"], factor, decimals))
            mean = f"<strong>{mean}</strong>" if (m, col) in best else mean
            spread = _spread(row, ci, factor, decimals)
            if spread is not None:
                mean += f" [{e(spread)}]" if ci else f" ± {e(spread)}"
            tds.append(f"<td>{mean}{_star(row)}</td>")
        body.append(f"<tr><td>{e(m)}</td>{''.join(tds)}</tr>")
    notes = "".join(f"<li>{e(n)}</li>" for n in _legend(lb, ci, scale, "—"))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Leaderboard</title>"
            f"<style>{_CSS}</style></head><body><h1>Leaderboard</h1><table><thead>"
            f"<tr><th></th>{top}</tr><tr><th>Model</th>{sub}</tr></thead><tbody>{''.join(body)}"
            f"</tbody></table><ul>{notes}</ul></body></html>\n")


def render_leaderboard(lb: Leaderboard, fmt: str = "md", *, ci: bool = False, scale: str = "percent",
                       decimals: int | None = None) -> str:
    """Render a leaderboard as Markdown, LaTeX (booktabs tabular), CSV (wide, numeric) or HTML.

    Args:
        lb: From :func:`build_leaderboard`.
        fmt: One of ``md``, ``latex``, ``csv``, ``html``.
        ci: Show a 95% CI instead of the std.
        scale: ``percent`` (0-100, the records' scale) or ``unit`` (0-1).
        decimals: Digits after the point; default 1 for percent, 3 for unit.

    Raises:
        UserError: Unknown format or scale.
    """
    if scale not in SCALES:
        raise UserError(f"unknown metric scale '{scale}'; choose one of {', '.join(SCALES)}")
    factor = SCALES[scale]
    digits = decimals if decimals is not None else (1 if scale == "percent" else 3)
    if fmt == "md":
        return _render_md(lb, ci, factor, digits, scale)
    if fmt == "latex":
        return _render_latex(lb, ci, factor, digits, scale)
    if fmt == "csv":
        return _render_csv(lb, ci, factor, digits)
    if fmt == "html":
        return _render_html(lb, ci, factor, digits, scale)
    raise UserError(f"unknown leaderboard format '{fmt}'; choose one of {', '.join(FORMATS)}")
