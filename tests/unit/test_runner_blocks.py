"""runner.run_trial builds prompts per block (PROMPT_BLOCK) yet calls the model on the same batches as building
them all first; a too-long query stops the run before any model call on its block, with earlier batches saved.
shots_ci from the per-sample scores kept at scoring equals the metric's second pass (trials_ci)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from flamingo_eval import runner
from flamingo_eval.config_load import compose_config
from flamingo_eval.errors import UserError
from flamingo_eval.task import prepare
from tests.conftest import make_vqav2
from tests.stub_model import StubExtras


class WordModel(StubExtras):
    """Counts words as tokens (context 40) and answers at once; records every batch's prompt texts."""

    model_id, max_context = "words", 40

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, requests: list[Any]) -> list[str]:
        self.batches.append([r.prompt.text for r in requests])
        return ["blue" if len(r.prompt.text) % 2 else "red" for r in requests]

    def rank(self, requests: list[Any]) -> list[list[float]]:
        return [[0.0 for _ in r.candidates] for r in requests]

    def fingerprint(self) -> str:
        return "words:v1"


class Quiet:
    def advance(self, n: int, resumed: bool = False) -> None:
        pass


def _task(tmp_path, on_bad_sample: str, long_at: int | None):  # noqa: ANN202
    root = make_vqav2(tmp_path / "data", n_train=6, n_val=20)
    cfg = compose_config("vqav2", "tiny", [f"run.data_root={root}", "run.shots=[0]", "run.batch_size=4",
                                           f"run.on_bad_sample={on_bad_sample}"])
    task = prepare(cfg)
    if long_at is not None:  # a query of 60 words: over the 40-token context even with no demo
        s = task.eval_samples[long_at]
        task.eval_samples[long_at] = replace(s, fields={**s.fields, "question": "why " * 60})
    return task


def _run(task, block: int, monkeypatch) -> tuple[WordModel, list[Any], BaseException | None]:  # noqa: ANN001
    monkeypatch.setattr(runner, "PROMPT_BLOCK", block)
    model, saved = WordModel(), []
    try:
        runner.run_trial(task, model, 0, 0, lambda lines, skipped=(): saved.append((lines, list(skipped))), Quiet())
    except UserError as e:
        return model, saved, e
    return model, saved, None


def test_blocks_call_the_model_on_the_batches_of_one_build(tmp_path, monkeypatch):
    task = _task(tmp_path, "skip", long_at=10)
    whole, whole_saved, _ = _run(task, 10_000, monkeypatch)
    blocked, blocked_saved, _ = _run(task, 6, monkeypatch)  # rounded up to 8 samples = 2 batches of 4
    assert blocked.batches == whole.batches and len(whole.batches) == 5  # 19 samples: 4+4+4+4+3
    # the batch after the skipped sample straddles the block boundary (8..12 minus 10, then 13)
    lines = [ln for ls, _ in blocked_saved for ln in ls]
    assert lines == [ln for ls, _ in whole_saved for ln in ls] and len(lines) == 19
    skips = [s["sample_id"] for _, sk in blocked_saved for s in sk]
    assert skips == [task.eval_samples[10].id]


def test_too_long_query_stops_before_its_block_with_earlier_batches_saved(tmp_path, monkeypatch):
    task = _task(tmp_path, "error", long_at=10)
    model, saved, err = _run(task, 8, monkeypatch)
    assert isinstance(err, UserError)
    assert "among samples 9-16 of the 20 this trial had left" in str(err) and "--on-bad-sample skip" in str(err)
    assert len(model.batches) == 2  # samples 1-8, two batches of 4; nothing of block 9-16 reached the model
    assert [ln["sample_id"] for ls, _ in saved for ln in ls] == [s.id for s in task.eval_samples[:8]]
    first_block = _task(tmp_path / "again", "error", long_at=2)
    model, saved, err = _run(first_block, 8, monkeypatch)
    assert isinstance(err, UserError) and model.batches == [] and saved == []


@pytest.mark.parametrize("trials", [1, 3])
def test_shots_ci_from_kept_scores_equals_the_second_metric_pass(tmp_path, trials):
    from flamingo_eval.metrics.base import MetricInput
    from flamingo_eval.metrics.stats import scores_ci, trials_ci
    from flamingo_eval.registry import METRICS

    metric = METRICS.get("vqa_accuracy")()
    refs = ("blue",) * 4 + ("red",) * 3 + ("green",) * 3
    answers = ["blue", "red", "green", "pink", "Blue", "red."]
    per_trial = []
    for t in range(trials):  # trial t skipped sample t: ids differ between trials
        per_trial.append([MetricInput(sample_id=str(i), answer=answers[(i + t) % len(answers)], references=refs)
                          for i in range(12) if i != t])
    kept = []
    for items in per_trial:
        res = metric(items)
        kept.append(([i.sample_id for i in items], tuple(res.per_sample)))
    assert scores_ci(kept, 500) == trials_ci(metric, per_trial, 500)
    assert scores_ci(kept, 0) is None and scores_ci([([], ())], 10) is None
