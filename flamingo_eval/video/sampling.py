"""Which frames a clip contributes: timestamps from a :class:`FrameSampling`, picked from a decoded stream.

Times are seconds of *clip time* (0 = the first frame's presentation time). Every decoder feeds frames in
presentation order to a :class:`FramePicker`, which keeps only what the sampling needs and says when to stop,
so the selection rule is the same whichever library decodes:

* the frame picked for a timestamp ``t`` is the frame *shown* at ``t``: the last frame whose presentation
  time is <= ``t`` (correct for variable frame rates, where frame index and time are not proportional);
* ``count`` mode: ``count`` timestamps at the centres of equal bins over the segment ``[start, end)``
  (rule ``bin_centre``); with rule ``linspace`` frames are chosen by index instead, the indices
  ``numpy.linspace(0, N - 1, count, dtype=int)`` among the segment's N frames (:class:`IndexPicker`; the
  segment is decoded twice: a first pass counts its frames); ``fps`` mode: ``start + k / fps`` for every
  ``k`` with the timestamp before ``end``, thinned to ``max`` evenly spread ones when there are more;
* a segment holding fewer frames than timestamps (a clip shorter than requested) gives all its frames in
  order and repeats the last one to the requested count (rule ``linspace``: the indices' own repeats, e.g.
  3 frames, 8 requested: 0 0 0 0 1 1 1 2); the clip is reported ``short``;
* decoding stops as soon as every timestamp has its frame (and the clip is known not to be short).

Memory is bounded by the request, not the clip: at most ``2 * count`` converted frames are held, plus one
decoded frame (the candidate for the next timestamp). When the headers promise at least twice the requested
frames (``expect_long``), the first frames are not kept at all; a clip that breaks that promise is decoded a
second time, keeping them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from flamingo_eval.errors import UserError
from flamingo_eval.types import FrameSampling

__all__ = ["EPS", "FramePicker", "IndexPicker", "Picked", "clip_bounds", "linspace_indices", "plan_times"]

EPS = 1e-6
"""Seconds: presentation times closer than this are equal (they come from integer timestamps)."""


def clip_bounds(duration: float, start: float | None, end: float | None, path: str) -> tuple[float, float]:
    """The segment ``[start, end)`` within a clip of ``duration`` seconds; ``end`` past the clip is clamped.

    Raises:
        UserError: a negative start, a start at or past the end of the clip, or ``end <= start``.
    """
    s = 0.0 if start is None else float(start)
    e = duration if end is None else min(float(end), duration)
    if s < 0:
        raise UserError(f"video {path}: segment start {s:g} s is negative; fix the annotation's start time")
    if s >= duration - EPS:
        raise UserError(f"video {path}: segment {s:g}-{'end' if end is None else f'{end:g}'} s starts at or past "
                        "the end "
                        f"of the clip ({duration:.3f} s); the annotation does not match this file")
    if e <= s + EPS:
        raise UserError(f"video {path}: segment end {end:g} s is not after its start {s:g} s; fix the annotation")
    return s, e


def plan_times(sampling: FrameSampling, start: float, end: float) -> list[float]:
    """The timestamps (clip time, ascending) a sampling asks for in the segment ``[start, end)``."""
    span = end - start
    if sampling.count is not None:
        n = sampling.count
        return [start + (i + 0.5) * span / n for i in range(n)]
    assert sampling.fps is not None and sampling.max is not None
    k = max(1, math.ceil(span * sampling.fps - EPS))  # timestamps start + i / fps strictly before end
    times = [start + i / sampling.fps for i in range(k)]
    if len(times) <= sampling.max:
        return times
    m = sampling.max
    return [times[(2 * j + 1) * len(times) // (2 * m)] for j in range(m)]  # centres of m equal runs


class _Lazy:
    """A frame converted to a bounded RGB image on first use (then the decoded frame is released)."""

    __slots__ = ("_convert", "_image")

    def __init__(self, convert: Callable[[], Image.Image]) -> None:
        self._convert: Callable[[], Image.Image] | None = convert
        self._image: Image.Image | None = None

    def get(self) -> Image.Image:
        if self._image is None:
            assert self._convert is not None
            self._image, self._convert = self._convert(), None
        return self._image


@dataclass(frozen=True)
class Picked:
    """The frames of one clip, in time order, and how they were obtained."""

    frames: tuple[Image.Image, ...]
    """Exactly as many frames as timestamps were planned."""
    short: bool
    """The segment held fewer frames than requested: its last frame was repeated."""
    seen: int
    """Frames of the segment the decoder delivered before the picker stopped it."""


class FramePicker:
    """Streaming selection of the frames shown at ``times`` within ``[start, end)`` (see the module docstring).

    A decoder calls :meth:`offer` for every decoded frame in presentation order until it returns False or the
    stream ends, then :meth:`finish`. :meth:`seek_hint` names a time the decoder may jump forward to (seeking
    to the keyframe at or before it) once skipping frames can no longer change the result.
    """

    def __init__(self, times: list[float], start: float, end: float, expect_long: bool = False) -> None:
        self.times, self.start, self.end, self.n = times, start, end, len(times)
        self.expect_long = expect_long
        self.chosen: list[Image.Image] = []
        # The segment's first n frames, kept until there are more (a short clip is made of them). When the
        # headers promise a long clip they are not kept; should it end early, ``needs_first_frames`` says so.
        self.first: list[Image.Image] | None = None if expect_long else []
        self.prev: _Lazy | None = None  # the latest frame offered: shown until the next one
        self.seen = 0

    def offer(self, t: float, convert: Callable[[], Image.Image]) -> bool:
        """Take the frame presented at clip time ``t``; False when nothing after it is needed."""
        frame = _Lazy(convert)
        if t < self.start - EPS:  # before the segment: the frame shown at its start, maybe
            self.prev = frame
            return True
        if t >= self.end - EPS and (self.seen > 0 or self.prev is not None):
            return False
        self.seen += 1
        if self.first is not None:
            if self.seen <= self.n:
                self.first.append(frame.get())
            else:
                self.first = None  # more frames than requested: the clip is not short
        while len(self.chosen) < self.n and self.times[len(self.chosen)] < t - EPS:
            self.chosen.append((self.prev or frame).get())  # the frame shown at that time
        self.prev = frame
        return len(self.chosen) < self.n or self.first is not None

    def seek_hint(self) -> float | None:
        """The next timestamp still to fill, once skipping frames is safe (the clip is known not short)."""
        if self.first is not None or len(self.chosen) >= self.n:
            return None
        return self.times[len(self.chosen)]

    def needs_first_frames(self) -> bool:
        """A clip expected to be long held fewer frames than requested: decode it again with a fresh picker."""
        return self.expect_long and self.seen < self.n

    def finish(self, path: str) -> Picked:
        """The picked frames after the stream ended or :meth:`offer` returned False.

        Raises:
            UserError: the segment has no decodable frame.
        """
        assert not self.needs_first_frames(), "decode again with expect_long=False"
        if self.seen == 0 and self.prev is None:
            raise UserError(f"video {path} has no decodable frame in {self._segment()}; the file is empty or "
                            "corrupt: re-download it")
        if self.seen == 0:  # the segment lies between two frames: the one before it is shown throughout
            assert self.prev is not None
            return Picked(frames=(self.prev.get(),) * self.n, short=self.n > 1, seen=0)
        if self.first is not None and self.seen < self.n:
            frames = self.first + [self.first[-1]] * (self.n - self.seen)
            return Picked(frames=tuple(frames), short=True, seen=self.seen)
        assert self.prev is not None
        last = self.prev.get()  # timestamps after the last frame's start: it is still shown
        frames = self.chosen + [last] * (self.n - len(self.chosen))
        return Picked(frames=tuple(frames), short=False, seen=self.seen)

    def _segment(self) -> str:
        return "the clip" if self.start <= 0 and math.isinf(self.end) else f"{self.start:g}-{self.end:g} s"


def linspace_indices(n_frames: int, count: int) -> list[int]:
    """``numpy.linspace(0, n_frames - 1, count, dtype=int)``: indices truncated toward zero, ends included.

    Other harnesses' rule (``dtype=int`` truncates; rounding instead would move some indices up by one).
    """
    import numpy as np

    return [int(i) for i in np.linspace(0, n_frames - 1, count, dtype=int)]


class IndexPicker(FramePicker):
    """The ``linspace`` rule: the segment's frames at given ordinals (0 = its first frame in ``[start, end)``).

    Built with ``indices=None`` it only counts the segment's frames (``seen``) and converts none: the first of
    the two passes. Indices past the segment (it held fewer frames than counted) take its last frame. A
    segment with no frame of its own gives the frame shown at its start, repeated (as :class:`FramePicker`).
    """

    def __init__(self, start: float, end: float, indices: list[int] | None, count: int = 0) -> None:
        super().__init__([], start, end)
        self.indices, self.n = indices, len(indices) if indices is not None else count
        self.wanted = set(indices or ())
        self.picked: dict[int, Image.Image] = {}
        self.last: _Lazy | None = None

    def offer(self, t: float, convert: Callable[[], Image.Image]) -> bool:
        """Count (and keep, when wanted) the frame presented at clip time ``t``; False once nothing is left."""
        frame = _Lazy(convert)
        if t < self.start - EPS:
            self.prev = frame
            return True
        if t >= self.end - EPS and (self.seen > 0 or self.prev is not None):
            return False
        if self.seen in self.wanted:
            self.picked[self.seen] = frame.get()
        self.seen += 1
        self.last = frame
        return self.indices is None or self.seen <= max(self.wanted, default=-1)

    def seek_hint(self) -> float | None:
        """Never: frames are chosen by index, so every frame up to the last index is counted."""
        return None

    def needs_first_frames(self) -> bool:
        """Never: indices are chosen from the counted frames."""
        return False

    def finish(self, path: str) -> Picked:
        """The frames at the indices, in order.

        Raises:
            UserError: the segment has no decodable frame.
        """
        if self.seen == 0 and self.prev is None:
            raise UserError(f"video {path} has no decodable frame in {self._segment()}; the file is empty or "
                            "corrupt: re-download it")
        if self.seen == 0:
            assert self.prev is not None
            return Picked(frames=(self.prev.get(),) * self.n, short=self.n > 1, seen=0)
        assert self.indices is not None and self.last is not None, "IndexPicker(indices=None) only counts"
        last = self.last.get()
        frames = tuple(self.picked.get(i, last) for i in self.indices)
        return Picked(frames=frames, short=self.seen < self.n, seen=self.seen)
