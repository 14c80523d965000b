"""Request kinds (``flamingo_eval/request_kinds.py``): each kind builds its requests, calls the model, merges a
sample's demo orders and extracts the answer; the runner and the prompt building never test the mode."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from flamingo_eval.errors import UserError
from flamingo_eval.registry import REQUEST_KINDS
from flamingo_eval.request_kinds import Generate, Rank, request_kind
from flamingo_eval.types import GenerateRequest, InterleavedPrompt, RankRequest, Sample
from tests.stub_model import StubExtras

ROOT = Path(__file__).resolve().parents[2]


def task(mode: str, candidates: tuple[str, ...] | None = None) -> Any:
    """The parts of a ``Task`` the kinds read."""
    gen = SimpleNamespace(max_new_tokens=7, num_beams=3, length_penalty=-1.0, stop=["\n", "Q:"])
    card = SimpleNamespace(id="bench", mode=mode, generation=gen, ensemble_orders=3, normalize_length=False)
    return SimpleNamespace(cfg=SimpleNamespace(benchmarks=card), candidates=candidates,
                           extractor=lambda text: text.strip().lower())


def sample(sid: str = "s1", **fields: Any) -> Sample:
    return Sample(id=sid, media=(), fields=fields, references=("yes",))


class Model(StubExtras):
    """Records calls; answers with fixed outputs."""

    model_id, max_context = "recorder", 2048

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any]]] = []

    def count_tokens(self, text: str) -> int:
        self.calls.append(("count", [text]))
        return len(text.split())

    def generate(self, reqs: list[Any]) -> list[str]:
        self.calls.append(("generate", reqs))
        return [" Yes " for _ in reqs]

    def rank(self, reqs: list[Any]) -> list[list[float]]:
        self.calls.append(("rank", reqs))
        return [[-1.0, -0.5] for _ in reqs]

    def fingerprint(self) -> str:
        return "recorder:v1"


def test_the_registry_holds_the_two_kinds():
    assert REQUEST_KINDS.names() == ["generate", "rank"]
    assert isinstance(request_kind("generate"), Generate) and isinstance(request_kind("rank"), Rank)
    with pytest.raises(UserError, match="unknown request kind .* 'ranking'; available: generate, rank"):
        request_kind("ranking")


def test_generate_builds_calls_and_extracts():
    kind, t, m = Generate(), task("generate"), Model()
    p = InterleavedPrompt(text="<image>Q: a? A:", media=("a.jpg",))
    reqs = kind.requests(t, [p], [sample()])
    assert reqs == [GenerateRequest(prompt=p, max_new_tokens=7, num_beams=3, length_penalty=-1.0, stop=("\n", "Q:"))]
    out = kind.call(m, reqs)
    assert m.calls == [("generate", reqs)] and kind.demo_orders(t.cfg.benchmarks) == 1
    assert kind.answer_room(t, m)(sample()) == 7
    got = kind.answer(t, sample(), kind.merge(out))
    assert (got.raw_output, got.answer, got.scores) == (" Yes ", "yes", None)


def test_rank_uses_the_samples_own_candidates_else_the_benchmarks():
    kind, t, m = Rank(), task("rank", candidates=("cat", "big dog")), Model()
    own = sample("s2", candidates=["a b c", "d"])
    room = kind.answer_room(t, m)
    assert (room(sample()), room(sample("s3")), room(own)) == (2, 2, 3)
    assert [c for c in m.calls if c[0] == "count"] == [("count", ["cat"]), ("count", ["big dog"]),
                                                        ("count", ["a b c"]), ("count", ["d"])]  # once per list
    p = InterleavedPrompt(text="<image>A:", media=("a.jpg",))
    reqs = kind.requests(t, [p, p], [sample(), own])
    assert reqs == [RankRequest(prompt=p, candidates=("cat", "big dog"), normalize_length=False),
                    RankRequest(prompt=p, candidates=("a b c", "d"), normalize_length=False)]
    assert kind.call(m, reqs) == [[-1.0, -0.5], [-1.0, -0.5]] and m.calls[-1] == ("rank", reqs)
    assert kind.demo_orders(t.cfg.benchmarks) == 3
    with pytest.raises(UserError, match="bench: rank mode needs candidates"):
        kind.requests(task("rank"), [p], [sample()])


def test_rank_merges_demo_orders_by_mean_and_ties_go_to_the_first_candidate():
    kind, t = Rank(), task("rank", candidates=("a", "b", "c"))
    assert kind.merge([[0.0, -3.0, 1.0], [-2.0, -1.0, 1.0]]) == [-1.0, -2.0, 1.0]
    assert kind.merge([[0.5, 0.25]]) == [0.5, 0.25]
    got = kind.answer(t, sample(), [-0.1234567, -0.1234567, -2.0])
    assert got.answer == "a" and got.scores == (-0.1234567, -0.1234567, -2.0)
    assert got.raw_output == "[-0.123457, -0.123457, -2.0]"


def test_the_runner_and_prompt_building_never_read_the_mode():
    """``.mode`` (the card's request kind) is read by ``Task.kind`` only; the runner asks the kind."""
    for rel in ("flamingo_eval/runner.py", "flamingo_eval/prompting.py", "flamingo_eval/results/lines.py",
                "flamingo_eval/results/store.py"):
        tree = ast.parse((ROOT / rel).read_text())
        reads = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "mode"]
        assert not reads, f"{rel} reads .mode at lines {reads}: ask task.kind instead"
