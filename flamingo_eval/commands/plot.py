"""``flamingo-eval plot``: shot-scaling curves (score vs shots, one line per model)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from flamingo_eval.errors import UserError


def add_parser(subparsers: Any) -> None:
    """Register the ``plot`` subcommand on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "plot",
        help="draw shot-scaling curves from run records",
        description="One panel per benchmark, one line per model, error bars = std over trials.",
    )
    p.add_argument("--results", default="results", metavar="DIR",
                   help="directory searched recursively for record.json files (default: results)")
    p.add_argument("--benchmark", nargs="+", action="extend", default=None, metavar="B",
                   help="benchmark id(s) to draw (default: all)")
    p.add_argument("--ci", action="store_true", help="error bars show the 95%% CI instead of the std")
    p.add_argument("--ddof", type=int, choices=(0, 1), default=0, help="std over trials (default 0)")
    p.add_argument("--output", metavar="FILE", default="results/shot_scaling.png",
                   help="output file, .png, .svg or .pdf (default: results/shot_scaling.png)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Draw and save the figure; returns 0, or 2 on unusable input."""
    from flamingo_eval.results.leaderboard import build_leaderboard
    from flamingo_eval.results.plots import plot_shot_scaling, save_figure
    from flamingo_eval.results.records import load_records

    try:
        lb = build_leaderboard(load_records(args.results), ddof=args.ddof)
        fig = plot_shot_scaling(lb, args.benchmark, ci=args.ci)
        path = save_figure(fig, args.output)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
