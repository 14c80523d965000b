"""``flamingo-eval data check BENCH``: exactly which files are missing and where they were looked for.

It takes the same ``--data-root`` and ``KEY=VALUE`` overrides as ``run`` (``benchmarks.data_dir=...``,
``benchmarks.files.videos=...``), so a moved layout is checked as a run would read it. For video benchmarks it
also reads the annotation files and looks at every clip they name (demo and eval split) with ``stat`` only --
nothing is decoded: each missing or unusable video is one line with its path and the reason.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the ``data`` subcommand on an ``argparse`` subparsers object."""
    p = sub.add_parser("data", help="inspect benchmark data on disk")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    c = dsub.add_parser("check", help="list the files (and videos) a benchmark needs and which are missing")
    c.add_argument("benchmark")
    c.add_argument("overrides", nargs="*", help="Hydra overrides KEY=VALUE, as for `run` (benchmarks.data_dir=DIR)")
    c.add_argument("--data-root", help="root directory of benchmark data")
    c.add_argument("--model", default="mini", help=argparse.SUPPRESS)  # load_config composes a whole run config
    c.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """List each benchmark file and unusable video; 0 when nothing is missing, 1 otherwise."""
    from flamingo_eval.commands.run_cmd import load_config
    from flamingo_eval.config_load import available
    from flamingo_eval.errors import UserError
    from flamingo_eval.task import make_adapter
    from flamingo_eval.video.files import accepted, video_problems

    if args.benchmark not in available("benchmarks"):
        raise UserError(f"unknown benchmark '{args.benchmark}'; available: {', '.join(available('benchmarks'))}")
    cfg = load_config(args)
    card = cfg.benchmarks
    adapter = make_adapter(card, cfg.run.data_root)
    missing, bad, videos = 0, 0, 0
    print(f"{card.id}: data root {adapter.data_root}")
    splits = list(dict.fromkeys([card.demo_split, card.eval_split]))
    for split in splits:
        for name, path in adapter.files(split).items():
            ok = path.exists()
            missing += not ok
            print(f"  [{'ok' if ok else 'MISSING'}] {split:<6} {name:<20} {path}")
    for split in splits:
        if not hasattr(adapter, "video_files") or adapter.missing(split):
            continue  # not a video benchmark, or its annotations are missing (listed above)
        samples = adapter.load(split)
        problems = video_problems(samples)
        videos += len({m.path for s in samples for m in s.media if hasattr(m, "path")})
        for video, problem in problems:
            print(f"  [BAD] {split:<6} video {video}: {problem}")
        bad += len(problems)
    if hasattr(adapter, "video_files") and not missing:
        print(f"{videos} videos looked at (stat only; containers {accepted()}): {bad} missing or unusable")
    if missing or bad:
        print(f"{missing} files missing, {bad} videos missing or unusable; see docs/benchmarks.md for where to get "
              f"them (source: {card.source or 'n/a'})")
        return 1
    print("all files present")
    return 0
