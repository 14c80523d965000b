"""Metric vectors of the video benchmarks, hand-computed from the official formulas (docs/metrics.md).

WUPS runs on the WordNet stand-in of tests/wordnet_standin.py, whose Wu-Palmer values are derived in its
docstring (dog-cat 2/3, dog-puppy 6/7, ball-toy 6/7, dog-ball 2/7, puppy-ball 1/4).
"""

from __future__ import annotations

import numpy as np
import pytest

from flamingo_eval.errors import UserError
from flamingo_eval.metrics.base import MetricInput
from flamingo_eval.metrics.classification import AccuracyTopK
from flamingo_eval.metrics.video import AccuracyByType, IvqaAccuracy, RareActMwap, ivqa_score, rareact_mwap
from flamingo_eval.metrics.wups import Wups, clean, wup, wups_pair
from tests.wordnet_standin import StandInWordNet

WN = StandInWordNet()


def _wups(tmp_path) -> Wups:
    stop = tmp_path / "stopwords.txt"
    stop.write_text("the\na\n")
    return Wups(stopwords_file=str(stop), backend=WN)


@pytest.mark.parametrize(
    "a,b,threshold,expected",
    [
        ("dog", "dog", 0.9, 1.0),  # equal words: 1 whatever the threshold
        ("dog", "cat", 0.0, 2 / 3),  # 2*2/(3+3)
        ("dog", "cat", 0.9, 0.1 * 2 / 3),  # below 0.9: scaled by 0.1
        ("dog", "puppy", 0.9, 0.1 * 6 / 7),  # 6/7 = 0.857 < 0.9
        ("dog", "xyz", 0.0, 0.0),  # no synset
        ("dog", "run", 0.0, 0.0),  # both known, similarity undefined
    ],
)
def test_wup_vectors(a, b, threshold, expected):
    assert wup(a, b, threshold, WN) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "pred,ref,threshold,expected",
    [
        ("dog", "puppy", 0.0, 6 / 7),
        # P->R: dog 6/7 * ball 1/4 = 3/14; R->P: puppy max(6/7, 1/4) = 6/7; min = 3/14
        ("dog ball", "puppy", 0.0, 3 / 14),
        # at 0.9 every similarity is scaled: P->R (6/70)*(1/40); R->P max(6/70, 1/40) = 6/70; min = 6/2800
        ("dog ball", "puppy", 0.9, 6 / 2800),
        ("xyz dog", "dog", 0.0, 1.0),  # a word with no match is left out of the product
        ("xyz", "dog", 0.0, 0.0),  # nothing matched at all: 0
    ],
)
def test_wups_pair_vectors(pred, ref, threshold, expected):
    assert wups_pair(pred, ref, threshold, WN) == pytest.approx(expected, abs=1e-12)


def test_clean_lemmatises_and_drops_stopwords():
    assert clean("The Dogs holding", WN, frozenset({"the"})) == "dog hold"  # lemma; Porter stem (hold) known


def test_wups_metric_second_reference_at_the_same_threshold(tmp_path):
    metric = _wups(tmp_path)
    items = [
        # CW, two references: @0 max(2/3, 6/7) = 6/7; @0.9 max(1/15, 6/70) = 6/70 (the second reference at
        # threshold 0 -- the pitfall -- would give 6/7 here)
        MetricInput("q1", "dog", ("cat", "puppy"), extra={"type": "CW"}),
        MetricInput("q2", "the ball", ("toy",), extra={"type": "TP"}),  # TP counts as TN: 6/7 and 6/70
        MetricInput("q3", "yes", ("yes",), extra={"type": "DB"}),  # exact match: 1 and 1
        MetricInput("q4", "two", ("three",), extra={"type": "DC"}),  # exact match: 0 and 0
    ]
    res = metric(items)
    w0 = [6 / 7, 6 / 7, 1.0, 0.0]
    w9 = [6 / 70, 6 / 70, 1.0, 0.0]
    assert res.per_sample == pytest.approx([100 * x for x in w0])
    assert res.value == pytest.approx(100 * sum(w0) / 4)
    assert res.extras["wups_0.9"] == pytest.approx(100 * sum(w9) / 4)
    assert res.extras["wups_0_TN"] == pytest.approx(100 * 6 / 7) and "wups_0_TP" not in res.extras
    assert res.extras["wups_0.9_CW"] == pytest.approx(100 * 6 / 70)
    assert res.extras["wups_0_DB"] == 100.0 and res.extras["wups_0.9_DC"] == 0.0
    assert res.extras["wups_0_D"] == 50.0 and res.extras["wups_0_T"] == pytest.approx(100 * 6 / 7)  # groups


def test_wups_needs_its_stopword_list(tmp_path):
    with pytest.raises(UserError, match="stopwords.txt"):
        Wups(stopwords_file=None, backend=WN)
    with pytest.raises(UserError, match="cannot read"):
        Wups(stopwords_file=str(tmp_path / "nope.txt"), backend=WN)


@pytest.mark.parametrize("pred,expected", [("red", 1.0), ("Red.", 1.0), ("blue", 0.5), ("purple", 0.0)])
def test_ivqa_vectors(pred, expected):
    answers = ("red", "red", "blue", "green", "red")  # red x3 -> min(3/2, 1) = 1; blue x1 -> 1/2
    assert ivqa_score(pred, answers) == expected


@pytest.mark.parametrize("pred,expected", [("red", 1.0), ("Red", 0.5), ("red ", 0.0), ("Red.", 0.0)])
def test_ivqa_raw_as_just_ask(pred, expected):
    # Just Ask counts each raw annotator cell (collections.Counter over answer1..answer5) and scores the
    # predicted string's count: min(count / 2, 1); nothing is stripped or lower-cased.
    answers = ("red", "red", "Red", "blue", " red")  # "red" x2 -> 1; "Red" x1 -> 1/2; "red " x0; " red" is its own
    assert ivqa_score(pred, answers, normalize=False) == expected
    assert ivqa_score(" red", answers, normalize=False) == 0.5
    assert IvqaAccuracy(normalize=False)([MetricInput("a", "Red", answers)]).value == 50.0


def test_ivqa_metric_mean():
    res = IvqaAccuracy()(
        [MetricInput("a", "blue", ("blue", "x", "y", "z", "w")), MetricInput("b", "x", ("x", "x", "y", "z", "w"))]
    )
    assert res.per_sample == (50.0, 100.0) and res.value == 75.0


def test_topk_mean_headline():
    # right candidate ranked 1st, 3rd, 6th of six: top-1 1/3, top-5 2/3 -> Flamingo's figure (1/3 + 2/3)/2 = 50
    scores = [(9, 1, 2, 3, 4, 5), (5, 9, 8, 1, 2, 3), (6, 5, 4, 3, 2, 1)]
    items = [MetricInput(str(i), "", label=lab, scores=s) for i, (s, lab) in enumerate(zip(scores, (0, 0, 5)))]
    res = AccuracyTopK(k=(1, 5), headline="mean")(items)
    assert res.extras == {"top1": pytest.approx(100 / 3), "top5": pytest.approx(200 / 3)}
    assert res.value == pytest.approx(50.0) and res.per_sample == (100.0, 50.0, 0.0)
    assert AccuracyTopK(k=(1, 5))(items).value == pytest.approx(100 / 3)


def test_accuracy_by_type_mean_of_types():
    rows = [("Interaction", 0), ("Interaction", 0), ("Interaction", 1), ("Sequence", 1)]  # label 0 = right
    items = [
        MetricInput(str(i), "", label=lab, scores=(1.0, 0.0), extra={"type": t}) for i, (t, lab) in enumerate(rows)
    ]
    res = AccuracyByType(headline="mean_of_types")(items)
    assert res.extras["acc_Interaction"] == pytest.approx(200 / 3) and res.extras["acc_Sequence"] == 0.0
    assert res.extras["overall"] == 50.0 and res.value == pytest.approx(100 / 3)
    assert AccuracyByType()(items).value == 50.0


def test_accuracy_by_type_nextqa_mc_as_eval_mc():
    # eval_mc.py: TP is counted as TN ("Bef&Aft"); Acc_C / Acc_T / Acc_D sum the right answers of the types that
    # start with C / T / D and divide by their question count (pooled, not a mean of the type accuracies).
    rows = [("CW", 1), ("CW", 0), ("CH", 1), ("TN", 0), ("TP", 1), ("TC", 1), ("TC", 1), ("TC", 1), ("DC", 0),
            ("DL", 1), ("DO", 0)]  # (type, right?)
    items = [MetricInput(str(i), "", label=0 if ok else 1, scores=(1.0, 0.0), extra={"type": t})
             for i, (t, ok) in enumerate(rows)]
    res = AccuracyByType(merge_types={"TP": "TN"}, groups="first_letter")(items)
    assert res.extras["acc_TN"] == 50.0 and "acc_TP" not in res.extras  # TN wrong + TP right
    assert res.extras["acc_CW"] == 50.0 and res.extras["acc_TC"] == 100.0 and res.extras["acc_DO"] == 0.0
    assert res.extras["acc_C"] == pytest.approx(200 / 3)  # 2 of 3 (the mean of CW 50, CH 100 would be 75)
    assert res.extras["acc_T"] == pytest.approx(80.0)  # 4 of 5 (mean of TN 50, TC 100: 75)
    assert res.extras["acc_D"] == pytest.approx(100 / 3)  # 1 of 3
    assert res.value == pytest.approx(700 / 11) and res.extras["overall"] == res.value  # 7 of 11 right
    assert "acc_C" not in AccuracyByType()(items).extras  # no groups unless asked
    with pytest.raises(UserError, match="first_letter"):
        AccuracyByType(groups="prefix")


# RareAct: actions A=(cut, phone) 0, B=(wash, phone) 1, C=(blend, book) 2; rows (action, video, annotation):
RARE_ROWS = [(0, "v0", 1), (0, "v1", 0), (1, "v2", 1), (1, "v2", 2), (2, "v3", 1), (2, "v3", 1)]
RARE_SCORES = np.array(
    [[0.9, 0.3, 0.4], [0.8, 0.0, 0.0], [0.95, 0.6, 0.8], [0.1, 0.5, 0.0], [0.7, 0.9, 0.9], [0.2, 0.1, 0.3]]
)
# Groups (compute_score.py): A: pos [0], neg [1, 4, 5] (4, 5 positives of C, sharing neither word; video v3 twice
# -> weights 1/2), hard [2] (positive of B shares 'phone'). Ranked by column 0: 0.95 hard(1), 0.9 pos(1) ->
# precision 1/2 at full recall: WAP 1/2.
# B: pos [2], neg [4, 5] (weights 1/2), hard [0] (A's positive) + [3] (annotation 2). Column 1: 0.9 neg(1/2),
# 0.6 pos(1) -> precision 1 / 1.5: WAP 2/3 (unweighted it would be 1/2).
# C: pos [4, 5] (v3 twice: 1/2 each), neg [0, 2]. Column 2: 0.9 pos(.5) P=1 R=.5; 0.8 neg; 0.4 neg; 0.3 pos(.5)
# P=1/3 R=1: WAP .5*1 + .5*(1/3) = 2/3. mWAP = (1/2 + 2/3 + 2/3) / 3 = 11/18.
RARE_ACTIONS = [("cut", "phone"), ("wash", "phone"), ("blend", "book")]


def test_rareact_mwap_vector():
    verbs = [RARE_ACTIONS[a][0] for a, _, _ in RARE_ROWS]
    nouns = [RARE_ACTIONS[a][1] for a, _, _ in RARE_ROWS]
    value, per_action = rareact_mwap(
        RARE_SCORES,
        verbs,
        nouns,
        [a for a, _, _ in RARE_ROWS],
        [x for _, _, x in RARE_ROWS],
        [v for _, v, _ in RARE_ROWS],
    )
    assert per_action == pytest.approx({("cut", "phone"): 1 / 2, ("wash", "phone"): 2 / 3, ("blend", "book"): 2 / 3})
    assert value == pytest.approx(11 / 18)
    items = [
        MetricInput(
            str(i),
            "",
            scores=tuple(RARE_SCORES[i]),
            extra={
                "verb": RARE_ACTIONS[a][0],
                "noun": RARE_ACTIONS[a][1],
                "class_id": a,
                "annotation": x,
                "video_id": v,
            },
        )
        for i, (a, v, x) in enumerate(RARE_ROWS)
    ]
    res = RareActMwap()(items)
    assert res.value == pytest.approx(100 * 11 / 18) and res.per_sample == (None,) * 6
    with pytest.raises(UserError, match="needs class scores"):
        RareActMwap()([MetricInput("x", "", scores=(1.0,))])
