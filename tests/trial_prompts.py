"""Test helper: the prompt of each eval sample in one trial (the sampler's demo order), as the runner builds it."""

from __future__ import annotations

from flamingo_eval.errors import UserError
from flamingo_eval.prompting import trial_prompt_sets
from flamingo_eval.task import Task
from flamingo_eval.types import EvalModel, InterleavedPrompt


def trial_prompts(task: Task, model: EvalModel, shots: int, seed: int) -> list[InterleavedPrompt]:
    """One prompt per eval sample; a sample that does not fit the context raises its one-line error."""
    sets = trial_prompt_sets(task, model, shots, seed)
    bad = next((ps.error for ps in sets if ps.error), None)
    if bad:
        raise UserError(bad)
    return [ps.prompts[0] for ps in sets]
