"""``flamingo-eval data check BENCH``: exactly which files are missing and where they were looked for."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the ``data`` subcommand on an ``argparse`` subparsers object."""
    p = sub.add_parser("data", help="inspect benchmark data on disk")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    c = dsub.add_parser("check", help="list the files a benchmark needs and which are missing")
    c.add_argument("benchmark")
    c.add_argument("--data-root", help="root directory of benchmark data")
    c.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """List each benchmark file and whether it is present; 0 when nothing is missing."""
    from flamingo_eval.commands.list_cmd import load_card
    from flamingo_eval.config import available
    from flamingo_eval.errors import UserError
    from flamingo_eval.runner import make_adapter

    if args.benchmark not in available("benchmarks"):
        raise UserError(f"unknown benchmark '{args.benchmark}'; available: {', '.join(available('benchmarks'))}")
    card = load_card(args.benchmark)
    adapter = make_adapter(card, args.data_root)
    missing = 0
    print(f"{card.id}: data root {adapter.data_root}")
    for split in dict.fromkeys([card.demo_split, card.eval_split]):
        for name, path in adapter.files(split).items():
            ok = path.exists()
            missing += not ok
            print(f"  [{'ok' if ok else 'MISSING'}] {split:<6} {name:<20} {path}")
    if missing:
        print(f"{missing} missing; see docs/benchmarks.md for where to get them (source: {card.source or 'n/a'})")
        return 1
    print("all files present")
    return 0
