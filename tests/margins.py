"""Margin checks for tests that compare DISCRETE outputs (generated text, token ids, argmax) computed with
different shapes, kernels, thread counts or machines.

Two computations that are equal mathematically but run with other padded shapes (batch size, batch
neighbours, the engine vs the reference path, 1 vs 2 torchrun ranks, 1 vs 2 threads) give logits that
differ in the last bits: oneDNN/MKL and cuBLAS pick kernels and reduction orders by shape and thread count
(measured on the tiny test model: up to ~1e-5 on logits). Floats are therefore compared with a tolerance.
Discrete outputs may be compared exactly, but only when no decision on the way is a near-tie that such
noise could flip, so each such test checks the margins of its fixture:

* rank (argmax of candidate scores, the rank of the right candidate): the scores of the two paths are
  asserted equal within a tolerance ``tol``; when the winner beats the runner-up, and the right candidate
  is apart from every other, by more than ``2 * tol``, the discrete results follow from that tolerance
  (deterministic: read off the scores);
* generation (greedy and beam search): the outputs stay the same when every decoding step's scores get
  independent uniform noise in ``[-NOISE, NOISE]``, for several noise seeds. ``NOISE`` is 100x the float
  noise measured between shapes; a decision whose gap g is below that float noise flips under one seed with
  probability ~1/2 (``(2 NOISE - g)^2 / (8 NOISE^2)``), so a genuine near-tie in the fixture fails the check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from flamingo_eval.models import decoding

NOISE = 1e-3
"""Amplitude of the per-score perturbation that generated outputs must survive."""
SCORE_TOL = 1e-4
"""The tolerance the tests allow between candidate scores of two computations (float noise is ~1e-6)."""
SEEDS = (0, 1, 2, 3)


@contextlib.contextmanager
def noisy_decisions(seed: int, scale: float = NOISE) -> Iterator[None]:
    """Add uniform noise in [-scale, scale] to the scores of every greedy / beam-search step."""
    real = decoding._ban
    gen = torch.Generator().manual_seed(seed)

    def noisy(scores: torch.Tensor, banned: Any) -> torch.Tensor:
        out = real(scores, banned)
        noise = (torch.rand(out.shape, generator=gen, dtype=torch.float64) * 2 - 1) * scale
        return out + noise.to(out.device, out.dtype)  # -inf (banned) stays -inf

    decoding._ban = noisy  # type: ignore[assignment]
    try:
        yield
    finally:
        decoding._ban = real


def assert_generation_margin(run: Callable[[], Any], expected: Any, seeds: Sequence[int] = SEEDS) -> None:
    """``run()`` gives ``expected`` under every noise seed: its decisions are far from ties."""
    for seed in seeds:
        with noisy_decisions(seed):
            got = run()
        assert got == expected, (f"the fixture has a near-tie: its outputs change under +-{NOISE} score noise "
                                 f"(seed {seed}), so comparing them across shapes would test float noise")


def assert_rank_margin(scores: Sequence[Sequence[float]], tol: float = SCORE_TOL,
                       labels: Sequence[Any] | None = None) -> None:
    """Each row's best score leads by more than ``2 * tol``; so does the ``labels[i]``-th score (when an int)
    from every other: scores within ``tol`` of these then have the same argmax and the same label rank."""
    for i, row in enumerate(scores):
        vals = [float(x) for x in row]
        if len(vals) < 2:
            continue
        best, second = sorted(vals, reverse=True)[:2]
        assert best - second > 2 * tol, (f"row {i}: best candidate leads by only {best - second:.2e} "
                                         f"(<= 2 x {tol}): a near-tie, its argmax is float noise")
        label = labels[i] if labels is not None else None
        if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(vals):
            gap = min(abs(vals[label] - v) for j, v in enumerate(vals) if j != label)
            assert gap > 2 * tol, f"row {i}: the right candidate is only {gap:.2e} from another: its rank is noise"
