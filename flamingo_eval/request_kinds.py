"""Request kinds: what a card's ``mode`` means, one object per kind (``generate`` | ``rank``).

A kind owns everything that differs between generating an answer and ranking candidates: the room a prompt
must leave for the answer, how many demo orders a sample is asked with (prompt ensembling), building the
requests, calling the model, merging the outputs of a sample's demo orders, and turning an output into the
prediction's answer. The runner asks the task's kind (``Task.kind``) and never tests the mode; a new kind
is one class registered in ``REQUEST_KINDS`` (``config_load.validate`` lists the registered names).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from flamingo_eval.config import BenchmarkCard, Config
from flamingo_eval.errors import UserError
from flamingo_eval.registry import REQUEST_KINDS
from flamingo_eval.types import EvalModel, GenerateRequest, InterleavedPrompt, RankRequest, Sample


class TaskView(Protocol):
    """What a request kind reads of a run's task (:class:`flamingo_eval.task.Task` has it; the task asks its
    kind, so the kinds name only these attributes, not the task module)."""

    @property
    def cfg(self) -> Config:
        """The run's config (the card's generation settings, ``normalize_length``, ``id``)."""

    @property
    def candidates(self) -> tuple[str, ...] | None:
        """The benchmark's candidates (e.g. class names) when its samples carry none."""

    @property
    def extractor(self) -> Callable[[str], str]:
        """The template's answer extractor."""


@dataclass(frozen=True)
class Answer:
    """What a prediction line records of one model output."""

    raw_output: str
    """Generated text, or the JSON-encoded candidate scores (6 decimals)."""
    answer: str
    """The extracted answer, or the top-ranked candidate."""
    scores: tuple[float, ...] | None = None
    """One score per candidate (rank); None when generating."""


class RequestKind(ABC):
    """The interface of a request kind (one subclass per ``mode``, registered in ``REQUEST_KINDS``)."""

    name = ""

    @abstractmethod
    def answer_room(self, task: TaskView, model: EvalModel) -> Callable[[Sample], int]:
        """Tokens a sample's prompt must leave free for the answer."""

    def demo_orders(self, card: BenchmarkCard) -> int:
        """How many orderings of the same demos each sample is asked with (their outputs are merged)."""
        return 1

    @abstractmethod
    def requests(self, task: TaskView, prompts: Sequence[InterleavedPrompt], samples: Sequence[Sample]) -> list[Any]:
        """One request per (prompt, sample)."""

    @abstractmethod
    def call(self, model: EvalModel, requests: list[Any]) -> list[Any]:
        """The model's output per request."""

    @abstractmethod
    def merge(self, outputs: list[Any]) -> Any:
        """One output from the outputs of a sample's demo orders (:meth:`demo_orders` of them)."""

    @abstractmethod
    def answer(self, task: TaskView, sample: Sample, output: Any) -> Answer:
        """What the prediction line records of ``sample``'s (merged) output."""


@REQUEST_KINDS.register("generate")
class Generate(RequestKind):
    """Generate text (greedy or beam search) and extract the answer with the template's extractor."""

    name = "generate"

    def answer_room(self, task: TaskView, model: EvalModel) -> Callable[[Sample], int]:
        """``generation.max_new_tokens`` for every sample."""
        room = task.cfg.benchmarks.generation.max_new_tokens
        return lambda s: room

    def requests(self, task: TaskView, prompts: Sequence[InterleavedPrompt], samples: Sequence[Sample]
                 ) -> list[GenerateRequest]:
        """The card's generation settings on each prompt."""
        g = task.cfg.benchmarks.generation
        return [GenerateRequest(prompt=p, max_new_tokens=g.max_new_tokens, num_beams=g.num_beams,
                                length_penalty=g.length_penalty, stop=tuple(g.stop)) for p in prompts]

    def call(self, model: EvalModel, requests: list[Any]) -> list[str]:
        """``model.generate``."""
        return model.generate(requests)

    def merge(self, outputs: list[Any]) -> str:
        """The single output (generation asks each sample once)."""
        assert len(outputs) == 1, "generation asks each sample with one demo order"
        return str(outputs[0])

    def answer(self, task: TaskView, sample: Sample, output: Any) -> Answer:
        """The generated text and the extractor's answer."""
        return Answer(raw_output=output, answer=task.extractor(output))


@REQUEST_KINDS.register("rank")
class Rank(RequestKind):
    """Score every candidate (mean or summed log-prob after the prompt); the answer is the best one."""

    name = "rank"

    @staticmethod
    def candidates(task: TaskView, sample: Sample) -> tuple[str, ...]:
        """The sample's own candidates (e.g. VisDial's options), else the benchmark's (e.g. class names)."""
        return tuple(sample.fields.get("candidates", ()) or task.candidates or ())

    def answer_room(self, task: TaskView, model: EvalModel) -> Callable[[Sample], int]:
        """The longest candidate of the sample, tokenised alone (counted once per distinct candidate list)."""
        memo: dict[tuple[str, ...], int] = {}

        def room(s: Sample) -> int:
            cands = self.candidates(task, s)
            if cands not in memo:
                memo[cands] = max((model.count_tokens(c) for c in cands), default=0)
            return memo[cands]

        return room

    def demo_orders(self, card: BenchmarkCard) -> int:
        """``ensemble_orders``: the candidate scores of several demo orders are averaged."""
        return card.ensemble_orders

    def requests(self, task: TaskView, prompts: Sequence[InterleavedPrompt], samples: Sequence[Sample]
                 ) -> list[RankRequest]:
        """Each prompt with its sample's candidates.

        Raises:
            UserError: A sample without candidates (neither its own nor the benchmark's).
        """
        card = task.cfg.benchmarks
        out = []
        for p, s in zip(prompts, samples):
            cands = self.candidates(task, s)
            if not cands:
                raise UserError(f"{card.id}: rank mode needs candidates (adapter list or sample field)")
            out.append(RankRequest(prompt=p, candidates=cands, normalize_length=card.normalize_length))
        return out

    def call(self, model: EvalModel, requests: list[Any]) -> list[list[float]]:
        """``model.rank``."""
        return model.rank(requests)

    def merge(self, outputs: list[Any]) -> list[float]:
        """The mean score of each candidate over the demo orders."""
        if len(outputs) == 1:
            return list(outputs[0])
        return [sum(col) / len(outputs) for col in zip(*outputs)]

    def answer(self, task: TaskView, sample: Sample, output: Any) -> Answer:
        """The scores and the top-scored candidate (ties: the first)."""
        scores = tuple(float(x) for x in output)
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        return Answer(raw_output=json.dumps([round(x, 6) for x in scores]), answer=self.candidates(task, sample)[best],
                      scores=scores)


def request_kind(mode: str) -> RequestKind:
    """The kind a card's ``mode`` names (an unknown name lists the registered ones)."""
    kind: RequestKind = REQUEST_KINDS.get(mode)()
    return kind
