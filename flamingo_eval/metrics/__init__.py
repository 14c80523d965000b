"""Metrics: VQA accuracy, exact match, video QA (iVQA, WUPS, accuracy by type, RareAct mWAP), captioning
(CIDEr-D & co.), classification, VisDial, statistics.

Importing this package registers every metric in ``flamingo_eval.registry.METRICS``; all values are on a
0-100 scale (``mean_rank`` excepted) and unrounded. See docs/metrics.md.
"""

from flamingo_eval.metrics.base import Metric, MetricInput, MetricResult
from flamingo_eval.metrics.captioning import Cider, caption_scores
from flamingo_eval.metrics.classification import AccuracyTopK, RocAuc, p_yes, roc_auc
from flamingo_eval.metrics.okvqa_stem import OkvqaStemmer, VerbLemmatizer
from flamingo_eval.metrics.ranking import VisDial, gt_rank, ndcg, retrieval_summary
from flamingo_eval.metrics.stats import paired_test, trial_summary, trials_ci
from flamingo_eval.metrics.video import AccuracyByType, IvqaAccuracy, RareActMwap, ivqa_score, rareact_mwap
from flamingo_eval.metrics.vqa import ExactMatch, VqaAccuracy, normalize_answer, vqa_score
from flamingo_eval.metrics.wups import Wups

__all__ = [
    "AccuracyByType",
    "AccuracyTopK",
    "Cider",
    "ExactMatch",
    "IvqaAccuracy",
    "Metric",
    "MetricInput",
    "MetricResult",
    "OkvqaStemmer",
    "RareActMwap",
    "RocAuc",
    "VerbLemmatizer",
    "VisDial",
    "VqaAccuracy",
    "Wups",
    "caption_scores",
    "gt_rank",
    "ivqa_score",
    "ndcg",
    "normalize_answer",
    "p_yes",
    "paired_test",
    "rareact_mwap",
    "retrieval_summary",
    "roc_auc",
    "trial_summary",
    "trials_ci",
    "vqa_score",
]
