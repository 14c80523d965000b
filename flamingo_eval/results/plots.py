"""Shot-scaling curves: score vs number of shots, one line per model, one panel per benchmark.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend state), so it works
headless and in threads.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from flamingo_eval.errors import UserError
from flamingo_eval.results.leaderboard import Leaderboard
from flamingo_eval.results.records import write_atomic

PLOT_FORMATS = ("png", "svg", "pdf")
# Drop timestamps/versions so regenerated plots only differ when the data does.
_NO_TIMESTAMP: dict[str, dict[str, None]] = {"png": {"Software": None}, "svg": {"Date": None},
                                              "pdf": {"CreationDate": None}}


def _select(lb: Leaderboard, benchmarks: list[str] | None) -> list[str]:
    available = sorted(lb.cells["benchmark"].unique())
    if not benchmarks:
        return available
    chosen = []
    for b in benchmarks:
        # Accept the plain id even when the column label carries @version / (split).
        hits = [a for a in available if a == b or a.split("@")[0].split(" (")[0] == b]
        if not hits:
            raise UserError(f"no results for benchmark '{b}'; available: {', '.join(available)}")
        chosen += [h for h in hits if h not in chosen]
    return chosen


def plot_shot_scaling(lb: Leaderboard, benchmarks: list[str] | None = None, *, ci: bool = False) -> Figure:
    """Draw one panel per benchmark with an error-bar line per model (and per non-random sampler).

    Args:
        lb: From :func:`~flamingo_eval.results.leaderboard.build_leaderboard`.
        benchmarks: Benchmark ids/labels to draw; all when empty.
        ci: Error bars show the 95% CI instead of the std over trials.

    Returns:
        The figure (Agg canvas attached); each panel's ``containers`` hold one errorbar per line.

    Raises:
        UserError: A requested benchmark has no results.
    """
    names = _select(lb, benchmarks)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4.8 * cols, 3.6 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    for k, bench in enumerate(names):
        ax = fig.add_subplot(rows, cols, k + 1)
        sub = lb.cells[lb.cells["benchmark"] == bench]
        for (model, sampler), g in sub.groupby(["model", "sampler"], sort=True):
            g = g.sort_values("shots")
            if ci:
                lo = (g["mean"] - g["ci_lo"]).fillna(0.0)
                hi = (g["ci_hi"] - g["mean"]).fillna(0.0)
                err = [lo.to_numpy(), hi.to_numpy()]
            else:
                err = g["std"].fillna(0.0).to_numpy()
            label = model if sampler == "random" else f"{model} ({sampler})"
            ax.errorbar(g["shots"].to_numpy(), g["mean"].to_numpy(), yerr=err, marker="o", capsize=3,
                        label=label)
        shots = sorted(sub["shots"].unique())
        ax.set_xscale("symlog", base=2, linthresh=1)
        ax.set_xticks(shots, [str(s) for s in shots])
        ax.minorticks_off()
        metric = sub["metric"].iloc[0]
        ax.set_title(bench)
        ax.set_xlabel("shots")
        ax.set_ylabel(f"{metric} (0-100)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Save ``fig`` atomically; the format comes from the suffix (png, svg or pdf).

    Raises:
        UserError: Unsupported suffix.
    """
    p = Path(path)
    fmt = p.suffix.lower().lstrip(".")
    if fmt not in PLOT_FORMATS:
        raise UserError(f"{p}: unsupported plot format '{p.suffix}'; use one of "
                        + ", ".join(f".{f}" for f in PLOT_FORMATS))
    return write_atomic(p, lambda f: fig.savefig(f, format=fmt, dpi=150, metadata=_NO_TIMESTAMP[fmt]))
