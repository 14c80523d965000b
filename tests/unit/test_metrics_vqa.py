"""VQA accuracy, exact match and OK-VQA stemming against the PROTOCOLS.md reference vectors."""

from __future__ import annotations

import pytest

from flamingo_eval.errors import UserError
from flamingo_eval.metrics import MetricInput, normalize_answer, vqa_score
from flamingo_eval.metrics.okvqa_stem import MANUAL_MATCHES, OkvqaStemmer, VerbLemmatizer
from flamingo_eval.registry import METRICS

OTHERS = ["cat", "bird", "horse", "cow", "pig", "goat", "sheep", "fish", "frog", "ant"]


def gt(k: int) -> list[str]:
    return ["dog"] * k + OTHERS[: 10 - k]


def three_plus_others(answer: str) -> list[str]:
    return [answer] * 3 + OTHERS[:7]


CASES = [
    # prediction, answers, official HEAD, OpenFlamingo
    ("dog", gt(1), 30.0, 30.0),
    ("dog", gt(2), 60.0, 60.0),
    ("dog", gt(3), 90.0, 90.0),
    ("dog", gt(4), 100.0, 100.0),
    ("Yes", ["yes"] * 10, 0.0, 100.0),
    ("two", ["2"] * 10, 0.0, 100.0),
    ("Two", three_plus_others("2"), 90.0, 90.0),
    ("1,000", three_plus_others("1000"), 90.0, 90.0),
    ("t-shirt", three_plus_others("t shirt"), 90.0, 90.0),
    ("eleven", three_plus_others("11"), 0.0, 0.0),
    ("dog", ["dog", "dog", "cat", "cow", "pig"], 100 * 8 / 15, 100 * 8 / 15),
]


@pytest.mark.parametrize(("pred", "answers", "official", "openflamingo"), CASES)
def test_vqa_reference_table(pred, answers, official, openflamingo):
    assert vqa_score(pred, answers, "official") == pytest.approx(official, abs=1e-9)
    assert vqa_score(pred, answers, "openflamingo") == pytest.approx(openflamingo, abs=1e-9)


VIZWIZ_CASES = [
    # prediction, answers, VizWiz evaluation (prediction normalised, answers raw), OpenFlamingo (both normalised)
    ("dog", gt(3), 90.0, 90.0),
    ("Yes", ["yes"] * 10, 100.0, 100.0),  # unanimous answers: unlike `official`, the prediction is normalised
    ("two", ["2"] * 10, 100.0, 100.0),
    ("coca cola", three_plus_others("Coca-Cola"), 0.0, 90.0),  # the file's answer is never normalised ...
    ("Coca-Cola", three_plus_others("Coca-Cola"), 0.0, 90.0),  # ... so it can only match a normalised form
    ("yes", [" yes"] * 10, 0.0, 100.0),  # ... nor stripped
    ("Unanswerable.", ["unanswerable"] * 4 + OTHERS[:6], 100.0, 100.0),
]


@pytest.mark.parametrize(("pred", "answers", "vizwiz", "openflamingo"), VIZWIZ_CASES)
def test_vizwiz_variant_normalises_the_prediction_only(pred, answers, vizwiz, openflamingo):
    assert vqa_score(pred, answers, "vizwiz") == pytest.approx(vizwiz, abs=1e-9)
    assert vqa_score(pred, answers, "openflamingo") == pytest.approx(openflamingo, abs=1e-9)


def test_vizwiz_card_uses_the_vizwiz_evaluation():
    from flamingo_eval.commands.list_cmd import load_card

    card = load_card("vizwiz")
    assert card.metric.name == "vqa_accuracy" and card.metric.args == {"variant": "vizwiz"}


def test_five_answer_case_is_53_33():
    assert round(vqa_score("dog", ["dog", "dog", "cat", "cow", "pig"]), 2) == 53.33


def test_leave_one_out_keeps_duplicates_by_index():
    # Removing by value would drop both "dog"s and give 0 matches for them.
    assert vqa_score("dog", ["dog", "dog", "dog", "dog"]) == pytest.approx(100.0)
    assert vqa_score("dog", ["dog", "cat"]) == pytest.approx(100 * (0 + 1 / 3) / 2)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("The Dog.", "dog"),
        ("an apple", "apple"),
        ("none", "0"),
        ("Ten", "10"),
        ("dont", "don't"),
        ("3.5", "3.5"),
        ("yes!", "yes"),
        ("red, white", "red white"),
        ("red,white", "red white"),
        ("1,000,000", "1000000"),
        ("left / right", "left right"),
        ("line\nbreak\t", "line break"),
    ],
)
def test_normalize_answer(raw, normalized):
    assert normalize_answer(raw) == normalized


def test_vqa_metric_object_and_errors():
    metric = METRICS.get("vqa_accuracy")(variant="official")
    items = [MetricInput("q1", "Yes", tuple(["yes"] * 10)), MetricInput("q2", "dog", tuple(gt(3)))]
    result = metric(items)
    assert result.per_sample == pytest.approx((0.0, 90.0))
    assert result.value == pytest.approx(45.0)
    assert metric.corpus_level is False
    assert METRICS.get("vqa_accuracy")()(items).value == pytest.approx(95.0)  # default openflamingo
    with pytest.raises(UserError, match="variant"):
        METRICS.get("vqa_accuracy")(variant="vqav3")
    with pytest.raises(UserError, match="q3"):
        metric([MetricInput("q3", "dog", ())])


def test_exact_match():
    metric = METRICS.get("exact_match")()
    items = [MetricInput("a", "The Circle.", ("circle",)), MetricInput("b", "red", ("blue",))]
    result = metric(items)
    assert result.per_sample == (100.0, 0.0)
    assert result.value == 50.0
    assert METRICS.get("exact_match")(normalize=False)(items).value == 0.0


def fake_stemmer(tags: dict[str, str]) -> OkvqaStemmer:
    return OkvqaStemmer(
        tokenize=str.split,
        tag=lambda words: [(w, tags.get(w, "NN")) for w in words],
        lemmatize_verb=VerbLemmatizer(verbs={"ski", "surf", "sing", "singe"}, exceptions={"lying": ["lie"]}),
        singularize=lambda w: w[:-1] if w.endswith("s") else w,
    )


def test_stem_rules_order():
    stemmer = fake_stemmer({"dogs": "NNS", "surfing": "VBG", "cats": "VBZ", "Alps": "NNPS"})
    # manual table first, then -ing lemma, then plural nouns only.
    assert stemmer.stem("leaves surfing dogs cats Alps") == "leaf surf dog cats Alp"
    assert stemmer.stem("singing king") == "sing king"  # shortest lemma; unknown -ing word unchanged
    assert MANUAL_MATCHES["christmas"] == "christmas"
    assert len(MANUAL_MATCHES) == 168


def test_verb_lemmatizer_exceptions_take_priority():
    lemm = VerbLemmatizer(verbs={"lie", "ly"}, exceptions={"lying": ["lie"]})
    assert lemm.candidates("lying") == ["lie"]
    assert lemm("skiing") == "skiing"


def _real_wordnet() -> VerbLemmatizer | None:
    try:
        return VerbLemmatizer()
    except UserError:
        return None


@pytest.mark.skipif(_real_wordnet() is None, reason="WordNet not installed")
def test_verb_lemmatizer_on_wordnet():
    lemm = _real_wordnet()
    assert [lemm(w) for w in ["swimming", "eating", "making", "singing", "king"]] == [
        "swim",
        "eat",
        "make",
        "sing",
        "king",
    ]


def test_missing_nltk_data_is_a_user_error(monkeypatch, tmp_path):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(UserError, match="nltk.downloader"):
        OkvqaStemmer()
    with pytest.raises(UserError, match="nltk"):
        METRICS.get("vqa_accuracy")(stem=True)


def test_stem_with_metric_uses_stemmer():
    metric = METRICS.get("vqa_accuracy")()
    metric._stemmer = fake_stemmer({"dogs": "NNS"})
    assert metric([MetricInput("q", "dogs", tuple(gt(4)))]).value == pytest.approx(100.0)
