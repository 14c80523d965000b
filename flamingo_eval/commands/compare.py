"""``flamingo-eval compare``: paired significance test of a candidate run against a baseline (CI gate).

Exit codes: 0 = no significant regression, 1 = a drop larger than ``--max-drop`` is significant at
``--alpha`` (on a whole cell or on one group of its samples), 2 = unusable input (missing files, records that
cannot be paired, or a candidate lacking part of the baseline without ``--allow-partial`` -- one line says why).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from flamingo_eval.errors import UserError


def add_parser(subparsers: Any) -> None:
    """Register the ``compare`` subcommand on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "compare",
        help="paired test: did CANDIDATE get significantly worse than BASELINE?",
        description="Pairs samples (same ids, same demos) and runs a paired bootstrap + sign-flip "
        "permutation test per benchmark x shots. Exit 1 on a significant drop larger than --max-drop, "
        "0 otherwise, 2 on unusable input.",
    )
    p.add_argument("baseline", metavar="BASELINE", help="run directory, record.json, or directory of runs")
    p.add_argument("candidate", metavar="CANDIDATE", help="run directory, record.json, or directory of runs")
    p.add_argument("--max-drop", type=float, default=1.0, metavar="D",
                   help="tolerated drop in metric points (0-100 scale; default 1.0)")
    p.add_argument("--alpha", type=float, default=0.05, metavar="A", help="significance level (default 0.05)")
    p.add_argument("--n-resamples", type=int, default=10_000, metavar="N",
                   help="bootstrap / permutation resamples (default 10000)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the resampling (default 0)")
    p.add_argument("--allow-partial", action="store_true",
                   help="accept a candidate lacking shots settings, seeds or samples of the baseline: compare on "
                   "what both runs hold, and say so (without it such a candidate exits 2)")
    p.add_argument("--output", metavar="FILE", default=None,
                   help="also write the report (Markdown) here, e.g. $GITHUB_STEP_SUMMARY")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Compare, print the report, and return the gate's exit code (0, 1 or 2)."""
    from flamingo_eval.results.compare import compare_runs, format_comparison

    try:
        cmp = compare_runs(args.baseline, args.candidate, max_drop=args.max_drop, alpha=args.alpha,
                           n_resamples=args.n_resamples, seed=args.seed, allow_partial=args.allow_partial)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report = format_comparison(cmp)
    sys.stdout.write(report)
    if args.output:
        try:
            with open(args.output, "a", encoding="utf-8") as f:  # append: step summaries accumulate
                f.write(report + "\n")
        except OSError as e:
            print(f"error: cannot write {args.output}: {e.strerror or e}; choose a writable --output file",
                  file=sys.stderr)
            return 2
    return 1 if cmp.failed else 0
