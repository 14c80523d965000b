"""``flamingo-eval run``: evaluate a model on a benchmark at several shot counts and trials."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from flamingo_eval.config import ON_BAD_SAMPLE, SAMPLER_NAMES, SUBSETS

HELP = """Run a few-shot evaluation and write a run directory (record.json + predictions.jsonl).

Extra KEY=VALUE arguments are Hydra overrides of the composed config, e.g.
  model.batch_size=4  model.precision=bf16  model.checkpoint=PATH  prompts=flamingo
  benchmarks.generation.num_beams=1  run.sampler=fixed  run.zero_shot_text_demos=0
Your own OpenFlamingo-format model directory (checkpoint.pt, lm/, optional vision/; docs/openflamingo.md):
  --model openflamingo model.path=DIR  [model.name=NAME]
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="evaluate a model on a benchmark", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("benchmark", help="benchmark id (see `flamingo-eval list`)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides KEY=VALUE")
    p.add_argument("--shots", type=int, nargs="+", help="shot counts (default 0 4 8)")
    p.add_argument("--trials", type=int, help="trials per shot count (seeds seed..seed+N-1)")
    p.add_argument("--seeds", type=int, nargs="+", help="explicit trial seeds (overrides --trials)")
    p.add_argument("--seed", type=int, help="first seed (default 0)")
    p.add_argument("--limit", type=int, help="evaluate only N samples of the eval split (see --subset)")
    p.add_argument("--subset", choices=SUBSETS,
                   help="which N with --limit: first (default), random (seeded by --seed, the same for every "
                        "trial, like OpenFlamingo's num_samples), random_per_trial (each trial its own N)")
    p.add_argument("--batch-size", type=int, help="prompts per model call")
    p.add_argument("--model", default="mini", help="model config name (default: mini)")
    p.add_argument("--data-root", help="directory holding the benchmark data (see `data check`)")
    p.add_argument("--output", help="run directory (default: runs/<benchmark>-<model>-<time>)")
    p.add_argument("--sampler", choices=SAMPLER_NAMES,
                   help="demo selection (default random; rices: CLIP-nearest train images)")
    p.add_argument("--on-bad-sample", choices=ON_BAD_SAMPLE, help="bad image: stop (default) or skip and count")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=None,
                   help="continue a compatible partial run in --output (default on; --no-resume refuses one)")
    p.add_argument("--overwrite", action="store_true", default=None,
                   help="replace the run in --output (a different config, or a finished run) instead of refusing")
    p.set_defaults(func=run)


FLAGS = {"shots": "shots", "trials": "trials", "seeds": "seeds", "seed": "seed", "limit": "limit", "subset": "subset",
         "batch_size": "batch_size", "data_root": "data_root", "output": "output", "sampler": "sampler",
         "on_bad_sample": "on_bad_sample", "resume": "resume", "overwrite": "overwrite"}


def load_config(args: argparse.Namespace) -> Any:
    from flamingo_eval.config import compose_config, to_dict, validate
    from flamingo_eval.errors import UserError

    for o in args.overrides:
        if "=" not in o:
            raise UserError(f"bad override '{o}': expected KEY=VALUE (e.g. model.batch_size=4)")
    cfg = compose_config(args.benchmark, args.model, list(args.overrides))
    data = to_dict(cfg)
    for flag, key in FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            data["run"][key] = value
    return validate(data)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from flamingo_eval import distributed
    from flamingo_eval.display import reporter, results_table
    from flamingo_eval.models.build import build_model
    from flamingo_eval.results.records import load_record
    from flamingo_eval.results.store import check_output_dir, config_hash
    from flamingo_eval.runner import Reporter, evaluate, prepare

    cfg = load_config(args)
    task = prepare(cfg)  # fail on missing data before loading a model
    dist = distributed.init(cfg.model.device)  # torchrun: one process per GPU; else a single process
    try:
        out = Path(dist.broadcast(cfg.run.output or
                                  f"runs/{cfg.benchmarks.id}-{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"))
        # Refuse (or find nothing to do) before loading a model.
        if check_output_dir(out, config_hash(cfg), cfg.run.resume, cfg.run.overwrite) == "complete":
            if dist.is_main:
                reporter().log(f"{out} already holds this complete run; nothing to do (--overwrite to redo it)")
                results_table(load_record(out), str(out))
            return 0
        device = distributed.local_device(cfg.model.device, dist)
        model = build_model(replace(cfg.model, device=device), batch_size=cfg.run.batch_size)
        record = evaluate(cfg, model, out, reporter() if dist.is_main else Reporter(),
                          command=shlex.join(["flamingo-eval", *sys.argv[1:]]), task=task)
        if dist.is_main:
            results_table(record, str(out))
    finally:
        distributed.shutdown()
    return 0
