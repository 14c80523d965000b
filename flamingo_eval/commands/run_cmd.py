"""``flamingo-eval run``: evaluate a model on a benchmark at several shot counts and trials."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from flamingo_eval.config import ON_BAD_SAMPLE, SUBSETS

HELP = """Run a few-shot evaluation and write a run directory (record.json + predictions.jsonl).

Extra KEY=VALUE arguments are Hydra overrides of the composed config, e.g.
  model.batch_size=4  model.precision=bf16  model.checkpoint=PATH  prompts=flamingo
  benchmarks.generation.num_beams=1  run.sampler=fixed  run.zero_shot_text_demos=0
Your own OpenFlamingo-format model directory (checkpoint.pt, lm/, optional vision/; docs/openflamingo.md):
  --model openflamingo model.path=DIR  [model.name=NAME]
"""


def int_or_override(text: str) -> int | str:
    """An int, or a ``KEY=VALUE`` override that argparse swept into a list flag (``--shots 0 4 model.x=1``)."""
    return text if "=" in text and not text.startswith("-") else int(text)


int_or_override.__name__ = "int"  # argparse names the type in its error: "invalid int value: 'x'"


def add_parser(sub: Any) -> None:
    """Register the ``run`` subcommand on an ``argparse`` subparsers object."""
    p = sub.add_parser("run", help="evaluate a model on a benchmark", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("benchmark", help="benchmark id (see `flamingo-eval list`)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides KEY=VALUE")
    p.add_argument("--shots", type=int_or_override, nargs="+", help="shot counts (default 0 4 8)")
    p.add_argument("--trials", type=int, help="trials per shot count (seeds seed..seed+N-1)")
    p.add_argument("--seeds", type=int_or_override, nargs="+", help="explicit trial seeds (overrides --trials)")
    p.add_argument("--seed", type=int, help="first seed (default 0)")
    p.add_argument("--limit", type=int, help="evaluate only N samples of the eval split (see --subset)")
    p.add_argument("--subset", choices=SUBSETS,
                   help="which N with --limit: first (default), random (seeded by --seed, the same for every "
                        "trial, like OpenFlamingo's num_samples), random_per_trial (each trial its own N)")
    p.add_argument("--batch-size", type=int, help="prompts per model call (progress and part files advance per batch)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: this process's share of the usable "
                                               "cores, or $OMP_NUM_THREADS; recorded, not in the config hash)")
    p.add_argument("--model", default="mini", help="model config name (default: mini)")
    p.add_argument("--data-root", help="directory holding the benchmark data (see `data check`)")
    p.add_argument("--output", help="run directory (default: runs/<benchmark>-<model>-<time>)")
    p.add_argument("--sampler", metavar="NAME",
                   help="demo selection, a registered sampler (default random; rices: CLIP-nearest train images); "
                        "an unknown name fails at start-up listing the others")
    p.add_argument("--on-bad-sample", choices=ON_BAD_SAMPLE, help="bad image: stop (default) or skip and count")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=None,
                   help="continue a compatible partial run in --output (default on; --no-resume refuses one)")
    p.add_argument("--overwrite", action="store_true", default=None,
                   help="replace the run in --output (a different config, or a finished run) instead of refusing")
    p.set_defaults(func=run)


FLAGS = {"shots": "shots", "trials": "trials", "seeds": "seeds", "seed": "seed", "limit": "limit", "subset": "subset",
         "batch_size": "batch_size", "threads": "threads", "data_root": "data_root", "output": "output",
         "sampler": "sampler",
         "on_bad_sample": "on_bad_sample", "resume": "resume", "overwrite": "overwrite"}


def load_config(args: argparse.Namespace) -> Any:
    """Compose and validate the run config from the CLI flags and overrides (no torch imported)."""
    from flamingo_eval.config import to_dict
    from flamingo_eval.config_load import compose_config, validate
    from flamingo_eval.errors import UserError

    for flag in ("shots", "seeds"):  # give back overrides that followed a list flag
        values = getattr(args, flag, None) or []
        args.overrides = [*args.overrides, *(v for v in values if isinstance(v, str))]
        if values:
            setattr(args, flag, [v for v in values if not isinstance(v, str)] or None)
    for o in args.overrides:
        if "=" not in o:
            raise UserError(f"bad override '{o}': expected KEY=VALUE (e.g. model.batch_size=4)")
    check_paths(args)
    cfg = compose_config(args.benchmark, args.model, list(args.overrides))
    data = to_dict(cfg)
    for flag, key in FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            data["run"][key] = value
    return validate(data)


def check_paths(args: argparse.Namespace) -> None:
    """``--output ""`` and a ``--data-root`` that is not a directory: one line each, before anything is read."""
    from flamingo_eval.errors import UserError

    output, root = getattr(args, "output", None), getattr(args, "data_root", None)
    if output is not None and not output.strip():
        raise UserError("--output is empty; pass a run directory, or leave the flag out for "
                        "runs/<benchmark>-<model>-<time>")
    if root:
        path = Path(root).expanduser()
        if path.exists() and not path.is_dir():
            raise UserError(f"--data-root {root} is a file, not a directory: pass the directory that holds the "
                            "benchmark folders (e.g. --data-root ~/data with ~/data/vqav2/ inside)")
        if not path.exists() and path.is_symlink():
            raise UserError(f"--data-root {root} is a broken symlink; fix the link or pass the data directory")


def run(args: argparse.Namespace) -> int:
    """Config and data first (one line on any problem, no torch imported yet), then lock the output
    directory, load the model and evaluate."""
    from flamingo_eval import distributed
    from flamingo_eval.display import Reporter, reporter, results_table

    cfg = load_config(args)  # a typo fails here, within a second: nothing heavy is imported before this
    if cfg.run.output:  # a read-only probe: every torchrun rank refuses alike
        from flamingo_eval.results.lock import refuse_if_locked

        refuse_if_locked(Path(cfg.run.output))  # a busy --output is refused before the data is read
    rep = reporter() if distributed.from_env().is_main else Reporter()
    card = cfg.benchmarks
    rep.phase(f"reading {card.id}: eval split '{card.eval_split}', demos from '{card.demo_split}'")
    from flamingo_eval.runner import evaluate, prepare

    task = prepare(cfg)  # missing data, an empty split or too few demos fail before a model loads
    dist = distributed.init(cfg.model.device)  # torchrun: one process per GPU; else a single process (no torch)
    try:
        default = f"runs/{card.id}-{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        out = Path(dist.broadcast(cfg.run.output or default))
        from flamingo_eval.results.lock import exclusive_output

        with exclusive_output(out, dist):  # a second run on this --output is refused here
            if output_state(out, cfg, dist) == "complete":
                if dist.is_main:
                    rep.log(f"{out} already holds this complete run; nothing to do (--overwrite to redo it)")
                    from flamingo_eval.results.records import load_record

                    results_table(load_record(out), str(out))
                return 0
            threads = distributed.apply_threads(cfg.run.threads)  # the first torch import of a single process
            rep.phase(f"loading model {cfg.model.name} ({cfg.model.device}, {threads} CPU threads)")
            from flamingo_eval.models.build import build_model

            model = build_model(replace(cfg.model, device=distributed.local_device(cfg.model.device, dist)),
                                batch_size=cfg.run.batch_size)
            record = evaluate(cfg, model, out, rep, command=shlex.join(["flamingo-eval", *sys.argv[1:]]), task=task,
                              threads=threads)
        if dist.is_main:
            results_table(record, str(out))
    finally:
        distributed.shutdown()
    return 0


def output_state(out: Path, cfg: Any, dist: Any) -> str:
    """Rank 0 decides what ``out`` holds (``fresh`` | ``resume`` | ``complete`` | ``overwrite``) and tidies
    a complete one; every rank gets the answer or the same one-line error."""
    from flamingo_eval.errors import UserError
    from flamingo_eval.results.store import check_output_dir, config_hash, tidy_complete

    answer = ("", "")
    if dist.is_main:
        try:
            mode = check_output_dir(out, config_hash(cfg), cfg.run.resume, cfg.run.overwrite)
            if mode == "complete":
                tidy_complete(out)  # a kill after the final record write may have left partial/ behind
            answer = (mode, "")
        except UserError as e:
            answer = ("", str(e))
    mode, err = dist.broadcast(answer)
    if err:
        raise UserError(err)
    return str(mode)
