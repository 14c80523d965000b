"""Top-k accuracy, ROC-AUC and VisDial metrics against the PROTOCOLS.md reference vectors."""

from __future__ import annotations

import pytest

from flamingo_eval.errors import UserError
from flamingo_eval.metrics import MetricInput, gt_rank, ndcg, p_yes, roc_auc
from flamingo_eval.registry import METRICS

DESCENDING = tuple(float(100 - i) for i in range(100))  # option i ranks i + 1


def test_p_yes_and_roc_auc_reference():
    assert p_yes([-0.5, -1.2]) == pytest.approx(0.331812, abs=1e-6)
    assert p_yes([-1000.0, 0.0]) == pytest.approx(1.0)
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_roc_auc_metric_uses_softmax_p_yes():
    # Monotone in (yes - no): p(yes) order 0.1 < 0.35 < 0.4 < 0.8 gives AUC 0.75 as in the reference.
    import math

    def logits(p):
        return (math.log(1 - p), math.log(p))

    probs, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    items = [
        MetricInput(str(i), "", label=y, scores=logits(p)) for i, (p, y) in enumerate(zip(probs, labels))
    ]
    result = METRICS.get("roc_auc")()(items)
    assert result.value == pytest.approx(75.0)
    assert result.per_sample == (None,) * 4
    assert result.extras["accuracy"] == pytest.approx(75.0)
    with pytest.raises(UserError, match="undefined"):
        METRICS.get("roc_auc")()(items[:2])


def test_accuracy_topk():
    scores = (0.1, 0.9, 0.5, 0.7, 0.3, 0.2, 0.0)
    items = [MetricInput(str(label), "", label=label, scores=scores) for label in (1, 3, 4, 6)]
    result = METRICS.get("accuracy_topk")()(items)
    assert result.value == pytest.approx(25.0)
    assert result.per_sample == (100.0, 0.0, 0.0, 0.0)
    assert result.extras == pytest.approx({"top1": 25.0, "top5": 75.0})
    with pytest.raises(UserError, match="out of range"):
        METRICS.get("accuracy_topk")()([MetricInput("x", "", label=9, scores=scores)])


def test_ties_keep_option_order():
    scores = [0.5, 0.9, 0.5, 0.5]
    assert [gt_rank(scores, i) for i in range(4)] == [2, 1, 3, 4]


def test_visdial_reference_retrieval():
    items = [MetricInput(f"r{g}", "", label=g, scores=DESCENDING) for g in (0, 7, 42)]
    result = METRICS.get("visdial")()(items)
    assert [gt_rank(DESCENDING, g) for g in (0, 7, 42)] == [1, 8, 43]
    assert result.extras["r@1"] == pytest.approx(100 / 3)
    assert result.extras["r@5"] == pytest.approx(100 / 3)
    assert result.extras["r@10"] == pytest.approx(200 / 3)
    assert result.extras["mean_rank"] == pytest.approx(17.333333, abs=1e-6)
    assert result.extras["mrr"] == pytest.approx(38.2752, abs=1e-4)
    assert result.value == result.extras["mrr"]  # no dense annotations -> headline MRR
    assert "ndcg" not in result.extras


def test_visdial_reference_ndcg():
    relevance = [0.0] * 100
    relevance[3], relevance[10], relevance[20] = 1.0, 0.6, 0.2
    scores = [0.0] * 100
    scores[10], scores[3], scores[50], scores[20] = 4.0, 3.0, 2.0, 1.0  # predicted order 10, 3, 50, 20, ...
    assert ndcg(scores, relevance) == pytest.approx(0.832521, abs=1e-6)
    items = [
        MetricInput("dense", "", label=3, scores=tuple(scores), extra={"gt_relevance": relevance}),
        MetricInput("sparse", "", label=0, scores=DESCENDING),
    ]
    result = METRICS.get("visdial")()(items)
    assert result.value == pytest.approx(83.2521, abs=1e-4)  # NDCG over the annotated round only
    assert result.extras["ndcg_rounds"] == 1.0
    assert result.per_sample == pytest.approx((50.0, 100.0))
