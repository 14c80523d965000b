"""CIDEr-D / BLEU-4 / METEOR / ROUGE-L via pycocoevalcap against the PROTOCOLS.md reference vectors."""

from __future__ import annotations

import shutil

import pytest

from flamingo_eval.errors import UserError
from flamingo_eval.metrics import MetricInput, caption_scores
from flamingo_eval.metrics.captioning import LINE_BREAKS
from flamingo_eval.registry import METRICS

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="java not installed")

REFS = [
    [
        "A man is riding a horse on the beach.",
        "A person rides a brown horse along the shore.",
        "Man on horseback at the beach.",
        "A rider and horse walking on sand near the ocean.",
        "A man riding a horse next to the water.",
    ],
    [
        "Two dogs play with a frisbee in the park.",
        "A pair of dogs chasing a frisbee on grass.",
        "Dogs playing in a grassy field.",
        "Two brown dogs running after a flying disc.",
        "Two dogs are playing outside.",
    ],
    [
        "A plate of food with broccoli and rice.",
        "Broccoli and rice on a white plate.",
        "A meal of rice, chicken and broccoli.",
        "A dish with vegetables and rice.",
        "Food on a plate including broccoli.",
    ],
]
HYPS = [
    "a man rides a horse on the beach",
    "two dogs playing with a frisbee",
    "a plate with rice and broccoli",
]


def items(n: int = 3) -> list[MetricInput]:
    return [MetricInput(f"img{i}", HYPS[i], tuple(REFS[i])) for i in range(n)]


@pytest.fixture(scope="module")
def full_result():
    return METRICS.get("cider")(extras=["bleu4", "meteor", "rouge_l"])(items())


def test_cider_and_extras_reference(full_result):
    assert full_result.value == pytest.approx(191.8185, abs=1e-4)
    assert full_result.per_sample == pytest.approx((213.538, 176.8826, 185.035), abs=1e-4)
    assert full_result.extras["bleu4"] == pytest.approx(41.6256, abs=1e-4)
    assert full_result.extras["rouge_l"] == pytest.approx(69.9876, abs=1e-4)
    assert full_result.extras["meteor"] == pytest.approx(38.7992, abs=1e-4)


def test_cider_subsets_change_idf():
    metric = METRICS.get("cider")()
    assert metric.corpus_level is True
    assert metric(items(2)).value == pytest.approx(189.7328, abs=1e-4)
    assert metric(items(1)).value == 0.0
    assert metric([]).value == 0.0


def test_empty_and_duplicate_predictions():
    value, per_image, extras = caption_scores(["", "...", HYPS[2]], REFS, ["bleu4", "rouge_l"])
    assert per_image[:2] == [0.0, 0.0]
    assert per_image[2] > 0.0
    assert value == pytest.approx(sum(per_image) / 3)
    assert set(extras) == {"bleu4", "rouge_l"}
    # The same image twice (a bootstrap resample) counts twice instead of collapsing on its id.
    twice = METRICS.get("cider")()([*items(), items()[0]])
    assert len(twice.per_sample) == 4


def test_bad_extras_and_missing_java(monkeypatch):
    with pytest.raises(UserError, match="extras"):
        METRICS.get("cider")(extras=["spice"])
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(UserError, match="Java"):
        METRICS.get("cider")()(items())


@pytest.mark.parametrize("brk", list(LINE_BREAKS), ids=[f"U+{ord(c):04X}" for c in LINE_BREAKS])
def test_line_breaking_characters_do_not_shift_captions(brk):
    """A line break inside a caption is a space: the reference vector still holds (was CIDEr 19.8 for U+2028)."""
    hyps = [HYPS[0].replace(" horse", brk + "horse"), HYPS[1], HYPS[2].replace("with ", "with" + brk)]
    refs = [list(r) for r in REFS]
    refs[0][1] = refs[0][1].replace(" rides ", f" rides{brk}")
    refs[1][0] = brk + refs[1][0] + brk
    refs[2][4] = refs[2][4].replace(" on ", f"{brk}{brk}on ")
    value, per_image, _ = caption_scores(hyps, refs)
    assert value == pytest.approx(191.8185, abs=1e-4)
    assert per_image == pytest.approx([213.538, 176.8826, 185.035], abs=1e-4)


def test_tokenizer_output_line_count_is_checked(monkeypatch):
    """If a line break ever reached the jar, the run stops with one line instead of misaligning captions."""
    from flamingo_eval.metrics import captioning

    monkeypatch.setattr(captioning, "one_line", lambda text: text)
    with pytest.raises(RuntimeError, match="returned 4 lines for 3 captions") as err:
        captioning.PtbTokenizer()(["a dog", "a\u2028cat", "a bird"])
    assert "\n" not in str(err.value)
