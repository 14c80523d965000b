"""A bad Hydra override is one line saying why (a wrong type, a misspelt key), not Hydra's merge text."""

from __future__ import annotations

import pytest

from flamingo_eval.config_load import compose_config
from flamingo_eval.errors import UserError


@pytest.mark.parametrize(("override", "message"), [
    ("model.batch_size=two", "bad override model.batch_size=two: model.batch_size must be an integer"),
    ("model.batchsize=2", "bad override model.batchsize=2: no key model.batchsize; did you mean model.batch_size?"),
    ("benchmarks.frames.count=eight", "benchmarks.frames.count must be an integer"),
    ("benchmarks.generation.num_beams=three", "benchmarks.generation.num_beams must be an integer"),
    ("model.init_gate=high", "model.init_gate must be a number"),
    ("model.blind=maybe", "model.blind must be true or false"),
    ("run.shots=[a]", "run.shots[0] must be an integer"),
    ("benchmarks.generation.num_beam=3", "did you mean benchmarks.generation.num_beams?"),
    ("prompts=nope", "Could not find 'prompts/nope'; available: flamingo, idefics, openflamingo"),
])
def test_bad_override_is_one_line_saying_why(override: str, message: str) -> None:
    with pytest.raises(UserError) as err:
        compose_config("easyvqa", "mini", [override])
    text = str(err.value)
    assert message in text and "\n" not in text
    assert "Error merging" not in text and "key=value" not in text.lower() and "To append" not in text


def test_unknown_key_without_a_close_match_lists_the_section() -> None:
    with pytest.raises(UserError, match=r"^bad override model\.zzz=1: no key model\.zzz; model has: name, "):
        compose_config("easyvqa", "mini", ["model.zzz=1"])


def test_appended_unknown_key_and_plain_data_say_why_too() -> None:
    """`+KEY=VALUE` passes Hydra and fails the schema merge in ``validate``: the same kind of line."""
    from flamingo_eval.config_load import validate

    with pytest.raises(UserError, match=r"^config error: no key run\.limt; did you mean run\.limit\?$"):
        compose_config("easyvqa", "mini", ["+run.limt=3"])
    with pytest.raises(UserError, match=r"^config error: run\.limit must be an integer$"):
        validate({"run": {"limit": "x"}})
