"""``flamingo-eval score BENCH --predictions FILE``: re-score saved predictions without a model."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("score", help="re-score a predictions.jsonl (prints JSON)")
    p.add_argument("benchmark")
    p.add_argument("--predictions", required=True, help="predictions.jsonl of a run")
    p.set_defaults(func=run)


def rescore(card: Any, lines: list[dict[str, Any]]) -> dict[str, Any]:
    from flamingo_eval.metrics.base import MetricInput
    from flamingo_eval.registry import METRICS
    from flamingo_eval.runner import summarize

    metric = METRICS.get(card.metric.name)(**card.metric.args)
    groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for d in lines:
        groups.setdefault((d["shots"], d["trial"]), []).append(d)
    out: dict[str, Any] = {"benchmark": card.id, "metric": card.metric.name, "results": []}
    for shots in sorted({k[0] for k in groups}):
        trials = []
        for (s, trial), rows in sorted(groups.items()):
            if s != shots:
                continue
            items = [MetricInput(sample_id=str(r["sample_id"]), answer=r["answer"],
                                 references=tuple(r.get("references") or ()), label=r.get("label"),
                                 scores=tuple(r["scores"]) if r.get("scores") is not None else None,
                                 extra=r.get("extra") or {}) for r in rows]
            res = metric(items)
            trials.append({"trial": trial, "seed": rows[0].get("seed"), "value": res.value, "n": len(items),
                           "extras": dict(res.extras)})
        out["results"].append({"shots": shots, "trials": trials, **summarize([t["value"] for t in trials])})
    return out


def run(args: argparse.Namespace) -> int:
    from flamingo_eval.commands.list_cmd import load_card
    from flamingo_eval.config import available
    from flamingo_eval.errors import UserError
    from flamingo_eval.results.records import iter_predictions

    if args.benchmark not in available("benchmarks"):
        raise UserError(f"unknown benchmark '{args.benchmark}'; available: {', '.join(available('benchmarks'))}")
    card = load_card(args.benchmark)
    lines = list(iter_predictions(args.predictions))
    if not lines:
        raise UserError(f"{args.predictions}: no predictions")
    print(json.dumps(rescore(card, lines), indent=2))
    return 0
