"""CIDEr-D on resample counts with the document frequencies OF EACH RESAMPLE (the ``cider`` fast path).

pycocoevalcap's CIDEr-D (``cider_scorer.py``) on a resample (an image drawn ``c`` times is ``c`` entries)
depends on the draw twice: through the mean over entries and through the IDF, ``log(#entries) -
log(max(1, df(g)))`` with ``df(g)`` the entries whose references hold n-gram ``g``. With counts ``c``:
``df = c @ D`` (``D``: image x n-gram, 1 when any reference of the image holds it). Every term of the
score is linear in ``idf(g)**2`` (``idf >= 0``, so the clipped numerator ``min(tf_h idf, tf_r idf) tf_r
idf = min(tf_h, tf_r) tf_r idf**2``, and each squared norm is ``sum tf**2 idf**2``), so a block of
resamples is a few sparse products with the ``(n-grams, rows)`` matrix of ``idf**2``:

``val[i, r, k] = num / (|h_k| |r_k|) * exp(-(len_h - len_r)**2 / 72)`` (0 where a norm is 0), the image's
score ``10 / (4 R_i) * sum_{r, k} val`` and the headline ``100 * sum_i c_i score_i / sum_i c_i``. Lengths are
pycocoevalcap's (the number of bigrams, a quirk of its ``counts2vec``); tokens come from the metric's own
PTB tokenizer, as ``captioning.caption_scores`` tokenises.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from flamingo_eval.metrics.base import MetricInput

ORDERS = 4
SIGMA = 6.0
BLOCK_CELLS = 4_000_000
"""n-grams x rows per block of the idf**2 matrix (~32 MB)."""


def _ngrams(tokens: str) -> Counter:
    words = tokens.split()
    return Counter(tuple(words[i:i + k]) for k in range(1, ORDERS + 1) for i in range(len(words) - k + 1))


class _Builder:
    """Sparse rows (row, column, value) of the matrices, with one n-gram vocabulary."""

    def __init__(self) -> None:
        self.vocab: dict[tuple[str, ...], int] = {}
        self.parts: dict[str, tuple[list[int], list[int], list[float]]] = {}

    def add(self, name: str, rows: list[int], grams: list[tuple[str, ...]], values: list[float]) -> None:
        """Append entries (row, n-gram, value) to matrix ``name``."""
        r, c, v = self.parts.setdefault(name, ([], [], []))
        vocab = self.vocab
        r += rows
        c += [vocab.setdefault(g, len(vocab)) for g in grams]
        v += values

    def matrix(self, name: str, rows: int) -> Any:
        """Matrix ``name`` as CSR, ``(rows, n-grams)`` (duplicate entries summed)."""
        from scipy.sparse import csr_matrix

        r, c, v = self.parts.get(name, ([], [], []))
        return csr_matrix((v, (r, c)), shape=(rows, len(self.vocab)))


def _tokens(metric: Any, items: Sequence[MetricInput]) -> tuple[list[str], list[list[str]]]:
    tok = metric._tokenizer
    flat = tok([i.answer for i in items] + [r for i in items for r in i.references])
    hyps, refs, pos = flat[:len(items)], [], len(items)
    for i in items:
        refs.append(flat[pos:pos + len(i.references)])
        pos += len(i.references)
    return hyps, refs


def cider_aggregate(metric: Any, items: Sequence[MetricInput]) -> Callable[[np.ndarray], np.ndarray]:
    """CIDEr-D x100 of each row of a count matrix over ``items``, IDF recomputed per row (module docstring)."""
    hyps, refs = _tokens(metric, items)
    b = _Builder()
    pair_img: list[int] = []
    pen: list[float] = []
    pair_weight: list[float] = []
    for i, (h, rs) in enumerate(zip(hyps, refs)):
        hc = _ngrams(h)
        len_h = sum(v for g, v in hc.items() if len(g) == 2)
        b.add("hyp", [i * ORDERS + len(g) - 1 for g in hc], list(hc), [float(v * v) for v in hc.values()])
        doc = list({g for r in rs for g in _ngrams(r)})
        b.add("doc", [i] * len(doc), doc, [1.0] * len(doc))
        for r in rs:
            p = len(pair_img) * ORDERS - 1
            rc = _ngrams(r)
            b.add("ref", [p + len(g) for g in rc], list(rc), [float(v * v) for v in rc.values()])
            common = [g for g in rc if g in hc]
            b.add("num", [p + len(g) for g in common], common, [float(min(hc[g], rc[g]) * rc[g]) for g in common])
            pair_img.append(i)
            pen.append(float(np.exp(-((len_h - sum(v for g, v in rc.items() if len(g) == 2)) ** 2) / (2 * SIGMA**2))))
            pair_weight.append(10.0 / (ORDERS * len(rs)))
    n_pairs = len(pair_img)
    doc, hyp = b.matrix("doc", len(items)).T.tocsr(), b.matrix("hyp", len(items) * ORDERS)
    ref, num = b.matrix("ref", n_pairs * ORDERS), b.matrix("num", n_pairs * ORDERS)
    hyp_row = (np.repeat(np.array(pair_img, dtype=np.int64) * ORDERS, ORDERS) + np.tile(np.arange(ORDERS), n_pairs))
    scale = np.repeat(np.array(pen) * np.array(pair_weight), ORDERS)[:, None]
    from scipy.sparse import csr_matrix

    to_image = csr_matrix((np.ones(n_pairs * ORDERS), (np.repeat(pair_img, ORDERS), np.arange(n_pairs * ORDERS))),
                          shape=(len(items), n_pairs * ORDERS))

    def block(counts: np.ndarray) -> np.ndarray:
        total = np.maximum(counts.sum(axis=1), 1.0)  # a row drawing none of these items: NaN below
        df = np.asarray(doc @ counts.T)  # (n-grams, rows)
        idf2 = (np.log(total)[None, :] - np.log(np.maximum(df, 1.0))) ** 2
        nh = np.sqrt(np.asarray(hyp @ idf2))[hyp_row]
        nr = np.sqrt(np.asarray(ref @ idf2))
        norms = nh * nr
        val = np.divide(np.asarray(num @ idf2), norms, out=np.zeros_like(norms), where=norms != 0) * scale
        per_image = np.asarray(to_image @ val)  # (items, rows)
        return np.where(counts.sum(axis=1) > 0, 100.0 * (counts * per_image.T).sum(axis=1) / total, np.nan)

    step = max(1, BLOCK_CELLS // max(len(b.vocab), 1))

    def agg(counts: np.ndarray) -> np.ndarray:
        return np.concatenate([block(counts[s:s + step]) for s in range(0, len(counts), step)])

    return agg
