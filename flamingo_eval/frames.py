"""A benchmark card's ``frames`` block -> the :class:`~flamingo_eval.types.FrameSampling` its videos use.

Its own small module: config validation and the video adapters both call it, and neither may import the
other (config imports the adapters lazily to check their arguments).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flamingo_eval.errors import UserError
from flamingo_eval.types import FRAME_RULES, FrameSampling

if TYPE_CHECKING:
    from flamingo_eval.config import BenchmarkCard


def frame_sampling(card: BenchmarkCard) -> FrameSampling:
    """The card's :class:`~flamingo_eval.types.FrameSampling` (``count: 8`` when the card sets none).

    Raises:
        UserError: both or neither of count/fps, fps without max, values out of range, or an unknown rule
            (or a rule other than bin_centre with fps).
    """
    f = card.frames
    rule = getattr(f, "rule", None) or "bin_centre"
    if rule not in FRAME_RULES:
        raise UserError(f"benchmark {card.id}: frames.rule '{rule}' is not a frame rule; use one of "
                        f"{', '.join(FRAME_RULES)} (e.g. benchmarks.frames.rule=linspace)")
    if f.count is None and f.fps is None:
        if f.max is not None:
            raise UserError(f"benchmark {card.id}: frames.max needs frames.fps (or use frames.count)")
        return FrameSampling(rule=rule)
    if f.count is not None and f.max is not None:
        raise UserError(f"benchmark {card.id}: frames.max goes with frames.fps; with frames.count drop it")
    try:
        return FrameSampling(count=f.count, fps=f.fps, max=f.max, rule=rule)
    except ValueError as e:
        raise UserError(f"benchmark {card.id}: {e} (e.g. benchmarks.frames.count=8, or "
                        "benchmarks.frames.count=null benchmarks.frames.fps=3 benchmarks.frames.max=30)") from None
