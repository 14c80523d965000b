"""``flamingo-eval score BENCH --predictions FILE [KEY=VALUE ...]``: re-score saved predictions without a model."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

DESCRIPTION = """Re-score a predictions file with the benchmark card's metric, without a model; prints JSON.

Exactly the file given is scored (a run directory means its predictions.jsonl). Every line needs shots,
trial, seed, sample_id, answer and references (label, scores, extra where the metric uses them). The file
must hold each (shots, seed, sample) once and exactly the samples the run evaluated: checked against the
run's record.json (next to the file, or --record) and the benchmark data (--data-root, else the run's).
Duplicates, missing or unknown ids stop with one line giving the counts (exit 2) unless --allow-partial."""

EPILOG = """examples:
  flamingo-eval score vqav2 --predictions runs/<run>/predictions.jsonl
  flamingo-eval score vqav2 --predictions runs/<run> benchmarks.metric.args.variant=official
  flamingo-eval score coco --predictions mine.jsonl --record runs/<run>/record.json \\
      'benchmarks.metric.args.extras=[bleu4,meteor,rouge_l]'
  flamingo-eval score vizwiz --predictions runs/<run> --allow-partial --output rescored.json"""


def add_parser(sub: Any) -> None:
    """Register the ``score`` subcommand on an ``argparse`` subparsers object."""
    p = sub.add_parser("score", help="re-score a predictions file without a model (prints JSON)",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("benchmark", metavar="BENCHMARK",
                   help="benchmark id, e.g. vqav2 (`flamingo-eval list`); its card names the metric")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="Hydra-style overrides of the benchmark card, e.g. benchmarks.metric.args.variant=official "
                        "(only benchmarks.* keys: nothing else changes a score)")
    p.add_argument("--predictions", required=True, metavar="FILE",
                   help="the predictions file to score (scored as given), or a run directory")
    p.add_argument("--record", metavar="FILE", default=None,
                   help="record.json of the run that wrote the predictions, to check the sample ids against "
                        "(default: the record.json next to FILE, if any)")
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="benchmark data, to check sample ids against the eval split (default: the run's)")
    p.add_argument("--allow-partial", action="store_true",
                   help="score despite duplicate/missing/unknown ids (last duplicate wins, unknown ids left out); "
                        "the counts go into the output")
    p.add_argument("--bootstrap-trials", action="store_true", default=None,
                   help="two-level ci95: resample the trials (demo draws) too, not only the samples "
                        "(default: the run's run.bootstrap_trials)")
    p.add_argument("--output", metavar="FILE", default=None, help="also write the JSON result to FILE")
    p.set_defaults(func=run)


def load_scoring_card(benchmark: str, overrides: list[str]) -> Any:
    """The benchmark card with ``benchmarks.*`` overrides applied (composed and validated as by ``run``)."""
    from flamingo_eval.commands.list_cmd import load_card
    from flamingo_eval.config_load import available, compose_config
    from flamingo_eval.errors import UserError

    if benchmark not in available("benchmarks"):
        raise UserError(f"unknown benchmark '{benchmark}'; available: {', '.join(available('benchmarks'))}")
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if "=" not in o or not key.startswith("benchmarks."):
            raise UserError(f"score takes only benchmarks.* overrides KEY=VALUE (e.g. "
                            f"benchmarks.metric.args.variant=official), got '{o}'")
    if not overrides:
        return load_card(benchmark)  # the same card, without composing a whole run config (Hydra: ~1 s)
    try:
        return compose_config(benchmark, overrides=overrides).benchmarks
    except UserError as e:
        if "Could not override" not in str(e):
            raise
        raise UserError(f"{e}; the card has no such key: add one with a leading +, e.g. "
                        "+benchmarks.metric.args.stem=true") from None


def run(args: argparse.Namespace) -> int:
    """Score the file, print the JSON result (and write it to --output); 0, or 2 on unusable input."""
    from flamingo_eval.results.records import write_text_atomic
    from flamingo_eval.results.rescore import score_file

    card = load_scoring_card(args.benchmark, list(args.overrides))
    out = score_file(card, args.predictions, record=args.record, data_root=args.data_root,
                     allow_partial=args.allow_partial, bootstrap_trials=args.bootstrap_trials)
    text = json.dumps(out, indent=2)
    print(text)
    if out["checks"]["partial"]:
        print(f"warning: {out['notes'][0]}", file=sys.stderr)
    if args.output:
        write_text_atomic(args.output, text + "\n")
    return 0
