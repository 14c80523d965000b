"""A trial's prompts: the demo sampler over the trial's query set, demo orders, one prompt per sample and order.

Demos are a pure function of stable keys (benchmark, split, seed, sample id, k), so a resumed or sharded run
builds the same prompts. A query that alone overflows the model context gets a :class:`PromptSet` holding
the reason instead of prompts; the runner skips and counts it, or stops before the model call of its block
(``runner.PROMPT_BLOCK``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flamingo_eval.errors import UserError
from flamingo_eval.prompts.builder import PromptTooLong, build_prompt
from flamingo_eval.prompts.samplers import keyed_rng, query_set
from flamingo_eval.registry import SAMPLERS
from flamingo_eval.task import Task
from flamingo_eval.types import EvalModel, InterleavedPrompt, Sample


def make_sampler(task: Task, seed: int) -> Any:
    """The run's demo sampler over the query set of trial ``seed``."""
    card, run = task.cfg.benchmarks, task.cfg.run
    pool = query_set(task.demo_samples, card.id, card.demo_split, seed, run.query_set_size or card.query_set_size)
    return SAMPLERS.get(run.sampler)(pool, card.id, card.demo_split, seed, context=task.sampler_context)


@dataclass(frozen=True)
class PromptSet:
    """One eval sample's prompts (one per demo order), or why it has none."""

    prompts: tuple[InterleavedPrompt, ...] = ()
    error: str | None = None
    """Set when the query alone does not fit the model context (the sample is skipped or the run stops)."""


def demo_orders(demos: list[Sample], n: int, *keys: object) -> list[list[Sample]]:
    """The sampler's order, then up to ``n - 1`` other distinct keyed permutations (prompt ensembling)."""
    orders, seen = [demos], {tuple(range(len(demos)))}
    rng = keyed_rng(*keys, "demo_orders")
    while len(orders) < min(n, math.factorial(len(demos))):
        perm = list(range(len(demos)))
        rng.shuffle(perm)
        if tuple(perm) not in seen:
            seen.add(tuple(perm))
            orders.append([demos[i] for i in perm])
    return orders


def answer_room(task: Task, model: EvalModel) -> Callable[[Sample], int]:
    """Tokens a sample's prompt must leave free for the answer (the task's request kind decides)."""
    return task.kind.answer_room(task, model)


def prompt_builder(task: Task, model: EvalModel, shots: int, seed: int
                   ) -> Callable[[Sequence[Sample]], list[PromptSet]]:
    """The prompt sets of any eval samples of trial ``seed``: one sampler for the trial, prompts built per call.

    Demos are keyed by sample id, so building a trial's prompts block by block (the runner does, so a kill
    loses at most one block of prompt work) gives the same prompts as building them all at once.
    """
    cfg, card = task.cfg, task.cfg.benchmarks
    sampler = make_sampler(task, seed)
    k = shots if shots > 0 else cfg.run.zero_shot_text_demos
    n_orders = task.kind.demo_orders(card)
    room = answer_room(task, model)

    def build(samples: Sequence[Sample]) -> list[PromptSet]:
        out = []
        for s in samples:
            demos = sampler.demos(s, k)
            if len(demos) != k:  # prepare() checked the pool size; never show fewer demos than recorded
                raise UserError(f"sampler {cfg.run.sampler} gave {len(demos)} demos instead of {k} for sample {s.id}")
            try:
                out.append(PromptSet(tuple(
                    build_prompt(task.template, order, s, text_only_demos=shots == 0,
                                 count_tokens=model.count_tokens, max_tokens=model.max_context, reserve=room(s))
                    for order in demo_orders(demos, n_orders, card.id, seed, s.id))))
            except PromptTooLong as e:
                out.append(PromptSet(error=f"{card.id}: {e}"))
        return out

    return build


def trial_prompt_sets(task: Task, model: EvalModel, shots: int, seed: int) -> list[PromptSet]:
    """Per eval sample, its prompts: one per demo order (the request kind's ``demo_orders``: ``ensemble_orders``
    when ranking, else 1)."""
    return prompt_builder(task, model, shots, seed)(task.eval_samples)
