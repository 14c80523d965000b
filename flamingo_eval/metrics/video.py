"""Metrics of the video benchmarks (docs/metrics.md has each formula and its source).

* ``ivqa_accuracy`` (iVQA): a question has 5 annotator answers; a prediction given by ``k`` of them scores
  ``min(k / 2, 1)`` (two agreeing annotators make an answer fully right). Answers are compared after the VQA
  answer normalisation (``normalize: true``), or exactly as they are (``normalize: false``, Just Ask's own rule).
* ``accuracy_by_type`` (NExT-QA multiple choice, STAR): the top-ranked option is right or wrong; extras give
  the accuracy per question type (``Sample`` field ``type``, passed as ``extra["type"]``); the headline is the
  overall accuracy or, with ``headline: mean_of_types`` (STAR's "Mean"), the mean of the per-type accuracies.
  ``merge_types`` renames types first (NExT-QA's ``eval_mc.py``: ``{TP: TN}``, its "Bef&Aft");
  ``groups: first_letter`` adds ``acc_<letter>``, the accuracy over all questions whose type starts with that
  letter (``eval_mc.py``'s Acc_C / Acc_T / Acc_D: pooled over questions, not a mean of the types).
* ``rareact_mwap`` (RareAct): mean over actions of a video-weighted average precision, as RareAct's
  ``compute_score.py`` computes it without its optional resampling (module function :func:`rareact_mwap`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from flamingo_eval.errors import UserError
from flamingo_eval.metrics.base import MetricInput, MetricResult
from flamingo_eval.metrics.vqa import normalize_answer
from flamingo_eval.registry import METRICS

__all__ = ["AccuracyByType", "IvqaAccuracy", "RareActMwap", "ivqa_score", "rareact_mwap"]


def ivqa_score(prediction: str, answers: Sequence[str], normalize: bool = True) -> float:
    """``min(#answers equal to the prediction / 2, 1)`` (0-1).

    With ``normalize=False`` the strings are compared exactly as they are (no strip, no case folding), as Just
    Ask's evaluation compares the predicted vocabulary entry with the raw annotator cells.
    """
    if not normalize:
        return min(sum(a == prediction for a in answers) / 2.0, 1.0)
    pred = normalize_answer(prediction)
    return min(sum(normalize_answer(a) == pred for a in answers) / 2.0, 1.0)


class IvqaAccuracy:
    """The ``ivqa_accuracy`` metric: mean of :func:`ivqa_score` (x100)."""

    name = "ivqa_accuracy"
    corpus_level = False

    def __init__(self, normalize: bool = True) -> None:
        """Create the metric.

        Args:
            normalize: Apply the VQA answer normalisation to both sides first.
        """
        self.normalize = normalize

    def __call__(self, items: list[MetricInput]) -> MetricResult:
        scores = []
        for item in items:
            if not item.references:
                raise UserError(f"ivqa_accuracy: sample '{item.sample_id}' has no reference answers")
            scores.append(100.0 * ivqa_score(item.answer, item.references, self.normalize))
        return MetricResult(value=sum(scores) / max(len(scores), 1), per_sample=tuple(scores))


class AccuracyByType:
    """The ``accuracy_by_type`` metric (module docstring)."""

    name = "accuracy_by_type"
    corpus_level = False

    def __init__(self, headline: str = "overall", merge_types: dict[str, str] | None = None,
                 groups: str = "none") -> None:
        """Create the metric.

        Args:
            headline: ``overall`` (mean over questions) or ``mean_of_types`` (mean of the type accuracies).
            merge_types: type renames applied before grouping (``{TP: TN}``).
            groups: ``none`` or ``first_letter`` (``acc_<letter>`` pooled over the questions of its types).
        """
        if headline not in ("overall", "mean_of_types"):
            raise UserError(f"accuracy_by_type: headline must be overall or mean_of_types, got '{headline}'")
        if groups not in ("none", "first_letter"):
            raise UserError(f"accuracy_by_type: groups must be none or first_letter, got '{groups}'")
        self.headline, self.merge, self.groups = headline, dict(merge_types or {}), groups
        # A mean of type accuracies is not a mean of per-sample scores: bootstrap it as a corpus value.
        self.corpus_level = headline == "mean_of_types"

    def __call__(self, items: list[MetricInput]) -> MetricResult:
        per_sample = []
        by_type: dict[str, list[float]] = {}
        for item in items:
            if item.scores is None or item.label is None or not 0 <= item.label < len(item.scores):
                raise UserError(f"accuracy_by_type: sample '{item.sample_id}' needs option scores and a label")
            best = max(range(len(item.scores)), key=lambda i: (item.scores[i], -i))  # type: ignore[index]
            hit = 100.0 if best == item.label else 0.0
            per_sample.append(hit)
            qtype = str(item.extra.get("type", ""))
            by_type.setdefault(self.merge.get(qtype, qtype), []).append(hit)
        overall = sum(per_sample) / max(len(per_sample), 1)
        extras = {f"acc_{t}": sum(v) / len(v) for t, v in sorted(by_type.items()) if t}
        if self.groups == "first_letter":
            for letter in sorted({t[0] for t in by_type if t}):
                hits = [h for t, v in by_type.items() if t[:1] == letter for h in v]
                extras[f"acc_{letter}"] = sum(hits) / len(hits)
        types = [v for t, v in by_type.items() if t]
        mean_types = sum(sum(v) / len(v) for v in types) / len(types) if types else overall
        extras.update(overall=overall, mean_of_types=mean_types)
        value = overall if self.headline == "overall" else mean_types
        return MetricResult(value=value, per_sample=tuple(per_sample), extras=extras)


def _per_video_weights(videos: Sequence[Any]) -> np.ndarray:
    """1 / (how often each video occurs in the list): every video weighs 1 in total."""
    count = Counter(videos)
    return np.array([1.0 / count[v] for v in videos], dtype=np.float64)


def rareact_groups(verbs: Sequence[str], nouns: Sequence[str],
                   annotations: Sequence[int]) -> dict[tuple[str, str], dict[str, list[int]]]:
    """Per action (verb, noun), in first-seen order, the row indices of its positives (``pos``), negatives
    (``neg``) and hard negatives (``hard``) as :func:`rareact_mwap` defines them."""
    actions = list(dict.fromkeys(zip(verbs, nouns)))
    groups: dict[tuple[str, str], dict[str, list[int]]] = {a: {"pos": [], "neg": [], "hard": []} for a in actions}
    for i, (v, n, a) in enumerate(zip(verbs, nouns, annotations)):
        if a == 0:
            groups[(v, n)]["neg"].append(i)
        elif a == 1:
            groups[(v, n)]["pos"].append(i)
            for av, an in actions:
                if (av == v) != (an == n):
                    groups[(av, an)]["hard"].append(i)
                elif av != v and an != n:
                    groups[(av, an)]["neg"].append(i)
        else:
            groups[(v, n)]["hard"].append(i)
    return groups


def rareact_mwap(scores: np.ndarray, verbs: Sequence[str], nouns: Sequence[str], class_ids: Sequence[int],
                 annotations: Sequence[int], videos: Sequence[Any]) -> tuple[float, dict[tuple[str, str], float]]:
    """RareAct's mWAP over rows (clips) of ``scores`` (rows x classes), and the WAP of each action.

    For an action (verb, noun) with class ``c``: its positives are the rows annotated 1 for it; its hard
    negatives the rows annotated 2 or 3 for it and the rows annotated 1 for an action sharing exactly one of
    its verb or noun; its negatives the rows annotated 0 for it and the rows annotated 1 for an action sharing
    neither. Column ``c`` of those rows is scored with scikit-learn's ``average_precision_score``, each row
    weighted by 1 / (its video's count within its own group: positives, negatives, hard negatives). Actions
    without positives are left out; mWAP is the mean over the others (0-1).
    """
    from sklearn.metrics import average_precision_score

    class_of = dict(zip(zip(verbs, nouns), class_ids))
    groups = rareact_groups(verbs, nouns, annotations)
    per_action = {}
    for action, g in groups.items():
        if not g["pos"]:
            continue
        rows = g["pos"] + g["neg"] + g["hard"]
        weights = np.concatenate([_per_video_weights([videos[i] for i in g[k]]) for k in ("pos", "neg", "hard")])
        label = np.zeros(len(rows), dtype=int)
        label[: len(g["pos"])] = 1
        per_action[action] = float(average_precision_score(label, scores[rows, class_of[action]],
                                                           sample_weight=weights))
    if not per_action:
        raise UserError("rareact_mwap: no action has a positive clip among the scored rows")
    return sum(per_action.values()) / len(per_action), per_action


class RareActMwap:
    """The ``rareact_mwap`` metric: headline mWAP x100 (a corpus value: no per-sample scores)."""

    name = "rareact_mwap"
    corpus_level = True

    def __call__(self, items: list[MetricInput]) -> MetricResult:
        fields = ("verb", "noun", "class_id", "annotation", "video_id")
        for item in items:
            if item.scores is None or any(f not in item.extra for f in fields):
                raise UserError(f"rareact_mwap: sample '{item.sample_id}' needs class scores and extra "
                                f"{', '.join(fields)}")
        scores = np.array([item.scores for item in items], dtype=np.float64)
        cols = {f: [item.extra[f] for item in items] for f in fields}
        value, _ = rareact_mwap(scores, [str(v) for v in cols["verb"]], [str(n) for n in cols["noun"]],
                                [int(c) for c in cols["class_id"]], [int(a) for a in cols["annotation"]],
                                cols["video_id"])
        return MetricResult(value=100.0 * value, per_sample=tuple(None for _ in items))


@METRICS.register("ivqa_accuracy")
def ivqa_accuracy(normalize: bool = True) -> IvqaAccuracy:
    """Factory for the ``ivqa_accuracy`` metric (card arg: ``normalize``)."""
    return IvqaAccuracy(normalize=normalize)


@METRICS.register("accuracy_by_type")
def accuracy_by_type(headline: str = "overall", merge_types: dict[str, str] | None = None,
                     groups: str = "none") -> AccuracyByType:
    """Factory for the ``accuracy_by_type`` metric (card args: ``headline``, ``merge_types``, ``groups``)."""
    return AccuracyByType(headline=headline, merge_types=merge_types, groups=groups)


@METRICS.register("rareact_mwap")
def rareact_mwap_metric() -> RareActMwap:
    """Factory for the ``rareact_mwap`` metric (no arguments)."""
    return RareActMwap()
