"""``flamingo-eval``: few-shot evaluation of Flamingo-style models.

Each subcommand lives in ``flamingo_eval/commands/<name>.py`` with ``add_parser`` and ``run``.
Errors a user can fix print one line (exit 2); no Python tracebacks unless FLAMINGO_EVAL_DEBUG=1.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys

COMMANDS = ("run", "list", "data", "score", "leaderboard", "compare", "plot")

EPILOG = """examples:
  flamingo-eval run easyvqa --shots 0 4 8 --limit 200          # the offline demo (mini model)
  flamingo-eval run vqav2 --shots 32 --trials 3 --data-root ~/data --model openflamingo-3b \\
      model.checkpoint=~/ckpt/OF-3B/checkpoint.pt
  flamingo-eval list                                            # benchmarks, metrics, data present?
  flamingo-eval data check vqav2 --data-root ~/data             # which files are missing, and where
  flamingo-eval score easyvqa --predictions runs/<run>/predictions.jsonl
  flamingo-eval leaderboard --results results/ --format latex
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``flamingo-eval`` argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="flamingo-eval", description=__doc__.splitlines()[0] if __doc__ else None, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"flamingo_eval.commands.{name}_cmd"
                                             if name in ("run", "list") else f"flamingo_eval.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("flamingo_eval.commands"):
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2 for a ``UserError``, printed as one line)."""
    from flamingo_eval.display import error
    from flamingo_eval.errors import UserError

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Overrides may come after options (`run bench --shots 4 model.batch_size=2`); argparse stops
    # collecting positionals at the first option, so gather the rest here.
    if extra and hasattr(args, "overrides") and not any(x.startswith("-") for x in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        error(str(e))
        return 2
    except KeyboardInterrupt:
        error("interrupted; predictions written so far are kept in the run directory: "
              "re-run the same command (same --output) to resume")
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if os.environ.get("FLAMINGO_EVAL_DEBUG"):
            raise
        error(f"unexpected {type(e).__name__}: {e} (set FLAMINGO_EVAL_DEBUG=1 for the traceback)")
        return 1
    finally:
        if argv is None:  # the process ends next: skip the interpreter's final full garbage collection
            gc.freeze()  # over every object of the run (~0.4 s idle, tens of seconds on a loaded machine)


if __name__ == "__main__":
    sys.exit(main())
