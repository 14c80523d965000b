"""``flamingo-eval list``: benchmarks with task, metric and whether their data is present."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the ``list`` subcommand on an ``argparse`` subparsers object."""
    p = sub.add_parser("list", help="list benchmarks (and models)")
    p.add_argument("--data-root", help="where to look for benchmark data")
    p.set_defaults(func=run)


def load_card(name: str) -> Any:
    """The benchmark card ``name`` read and validated alone (no whole run config composed)."""
    from omegaconf import OmegaConf

    from flamingo_eval.config import BenchmarkCard
    from flamingo_eval.config_load import cards_root
    from flamingo_eval.errors import UserError

    path = cards_root() / "benchmarks" / f"{name}.yaml"
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(BenchmarkCard), OmegaConf.load(path)))
    except Exception as e:  # noqa: BLE001
        raise UserError(f"{path}: invalid benchmark card ({str(e).splitlines()[0]})") from None


def run(args: argparse.Namespace) -> int:
    """Print the benchmarks, prompt families and model configs; 0."""
    from flamingo_eval.config_load import available
    from flamingo_eval.display import plain_table
    from flamingo_eval.errors import UserError
    from flamingo_eval.runner import data_missing

    rows = []
    for name in available("benchmarks"):
        card = load_card(name)
        try:
            present = "yes" if not data_missing(card, args.data_root) else "no"
        except UserError:
            present = "no"
        rows.append((card.id, card.task, card.mode, card.metric.name, f"{card.demo_split}->{card.eval_split}", present))
    plain_table(("benchmark", "task", "mode", "metric", "splits", "data"), rows, title="benchmarks")
    print("models: " + ", ".join(available("model")))
    return 0
