"""RareAct's mWAP on resample counts, vectorised (the ``rareact_mwap`` fast path of ``aggregates.py``).

``video.rareact_mwap`` on a resample's items equals this on the count vector: an item drawn ``c`` times is
``c`` rows with the same score and label, so in each action's group (positives, negatives, hard
negatives) a row weighs ``c / (drawn rows of its video in that group)``, and identical rows merge into one
weighted row of scikit-learn's weighted average precision. The group of every item for every action is
fixed by the annotations, so it is built once; per resample only the weights change:

``AP = sum_k (tp_k / P) * TP_k / (TP_k + FP_k)`` over the tie groups ``k`` of scores in decreasing
order (``tp_k``, ``fp_k``: the positive and negative weight of the group; ``TP_k``, ``FP_k``: cumulative;
``P``: all positive weight). Actions whose positives are not drawn are left out, as in the metric.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from flamingo_eval.metrics.base import MetricInput
from flamingo_eval.metrics.video import rareact_groups


@dataclass(frozen=True)
class _Action:
    """One action's rows in decreasing score order, with what the weights need."""

    rows: np.ndarray
    """Item indices, by score descending."""
    label: np.ndarray
    """1.0 for a positive row."""
    key: np.ndarray
    """Per row, the index of its (group, video) cell."""
    key_order: np.ndarray
    """Positions sorted by ``key`` and where each cell starts among them (for ``np.add.reduceat``)."""
    key_starts: np.ndarray
    tie_starts: np.ndarray
    """Where each group of equal scores starts among ``rows``."""


def _groups(items: Sequence[MetricInput]) -> dict[tuple[str, str], dict[str, list[int]]]:
    """Per action, its positive / negative / hard-negative item indices (``video.rareact_groups``)."""
    return rareact_groups([str(i.extra["verb"]) for i in items], [str(i.extra["noun"]) for i in items],
                          [int(i.extra["annotation"]) for i in items])


def _action(g: dict[str, list[int]], column: np.ndarray, videos: Sequence[object]) -> _Action:
    rows = np.array(g["pos"] + g["neg"] + g["hard"], dtype=np.int64)
    kinds = [k for k in ("pos", "neg", "hard") for _ in g[k]]
    cells = {cell: c for c, cell in enumerate(dict.fromkeys(zip(kinds, (videos[r] for r in rows))))}
    key = np.array([cells[(k, videos[r])] for k, r in zip(kinds, rows)], dtype=np.int64)
    label = np.array([k == "pos" for k in kinds], dtype=np.float64)
    order = np.argsort(-column[rows], kind="stable")
    rows, label, key = rows[order], label[order], key[order]
    key_order = np.argsort(key, kind="stable")
    sorted_key = key[key_order]
    key_starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    s = column[rows]
    tie_starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    return _Action(rows, label, key, key_order, key_starts, tie_starts)


def _weighted_ap(a: _Action, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``counts``: (the action's weighted AP, whether any positive was drawn)."""
    c = counts[:, a.rows]
    per_cell = np.add.reduceat(c[:, a.key_order], a.key_starts, axis=1)
    denom = per_cell[:, a.key]
    w = np.divide(c, denom, out=np.zeros_like(c), where=denom > 0)
    tp = np.add.reduceat(w * a.label, a.tie_starts, axis=1)
    fp = np.add.reduceat(w * (1.0 - a.label), a.tie_starts, axis=1)
    ctp, cfp = np.cumsum(tp, axis=1), np.cumsum(fp, axis=1)
    prec = np.divide(ctp, ctp + cfp, out=np.zeros_like(ctp), where=(ctp + cfp) > 0)
    total = ctp[:, -1]
    valid = total > 0
    ap = np.divide((tp * prec).sum(axis=1), total, out=np.zeros_like(total), where=valid)
    return ap, valid


def rareact_aggregate(items: Sequence[MetricInput]) -> Callable[[np.ndarray], np.ndarray]:
    """mWAP x100 of each row of a count matrix over ``items`` (NaN where no action has a drawn positive)."""
    scores = np.array([i.scores for i in items], dtype=np.float64)
    class_of = {(str(i.extra["verb"]), str(i.extra["noun"])): int(i.extra["class_id"]) for i in items}
    videos = [i.extra["video_id"] for i in items]
    actions = [_action(g, scores[:, class_of[a]], videos) for a, g in _groups(items).items() if g["pos"]]

    def agg(counts: np.ndarray) -> np.ndarray:
        total = np.zeros(len(counts))
        scored = np.zeros(len(counts))
        for a in actions:
            ap, valid = _weighted_ap(a, counts)
            total += ap
            scored += valid
        return np.divide(100.0 * total, scored, out=np.full(len(counts), np.nan), where=scored > 0)

    return agg
