"""``flamingo-eval leaderboard``: aggregate run records into a Markdown/LaTeX/CSV/HTML table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from flamingo_eval.errors import UserError

# Mirrors flamingo_eval.results.leaderboard_table.FORMATS/SCALES; kept here so building the CLI parser does
# not import pandas.
_FORMATS = ("md", "latex", "csv", "html")
_EXT = {"md": "md", "latex": "tex", "csv": "csv", "html": "html"}


def _digits(text: str) -> int:
    """argparse type for --decimals: an integer from 0 to 15 (a float holds ~15 significant digits)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
    if not 0 <= value <= 15:
        raise argparse.ArgumentTypeError(f"expected 0 to 15 digits, got {value}")
    return value


def add_parser(subparsers: Any) -> None:
    """Register the ``leaderboard`` subcommand on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "leaderboard",
        help="aggregate run records into a leaderboard table",
        description="Rows = model checkpoints, columns = benchmark x shots, cells = mean ± std over "
        "trials (best per column in bold). Reads every record.json under --results.",
    )
    p.add_argument("--results", default="results", metavar="DIR",
                   help="directory searched recursively for record.json files (default: results)")
    p.add_argument("--format", choices=_FORMATS, default="md", help="output format (default: md)")
    p.add_argument("--metric-scale", choices=("percent", "unit"), default="percent",
                   help="show metrics on 0-100 (percent, default) or 0-1 (unit)")
    p.add_argument("--decimals", type=_digits, default=None,
                   help="digits after the point (default: 1 for percent, 3 for unit)")
    p.add_argument("--ci", action="store_true",
                   help="show mean [95%% CI] (records' ci95: bootstrap of the metric's headline; the table "
                        "note names what it resamples), not mean ± std")
    p.add_argument("--ddof", type=int, choices=(0, 1), default=0,
                   help="std over trials: 0 = population (OpenFlamingo, default), 1 = sample")
    p.add_argument("--output", metavar="FILE", default=None,
                   help="where to write ('-' for stdout; default: LEADERBOARD.<ext> in the --results directory)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build and write the leaderboard; returns 0, or 2 on unusable input."""
    from flamingo_eval.results.leaderboard import build_leaderboard, render_leaderboard
    from flamingo_eval.results.records import load_records, write_text_atomic

    try:
        records = load_records(args.results)
        lb = build_leaderboard(records, ddof=args.ddof)
        text = render_leaderboard(lb, args.format, ci=args.ci, scale=args.metric_scale, decimals=args.decimals)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    output = args.output or str(Path(args.results) / f"LEADERBOARD.{_EXT[args.format]}")
    if output == "-":
        sys.stdout.write(text)
        return 0
    write_text_atomic(output, text)
    print(f"wrote {output}: {len(lb.models)} model(s) x {len(lb.columns)} column(s) "
          f"from {lb.n_records} record(s) under {args.results}")
    return 0
