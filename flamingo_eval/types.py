"""Typed values that cross stage boundaries (see docs/ARCHITECTURE.md).

Flow: adapter -> ``Sample`` -> prompt builder -> ``InterleavedPrompt`` -> ``GenerateRequest`` /
``RankRequest`` -> ``EvalModel`` -> ``Prediction``.

Media: one ``<image>`` slot stands for one media item, either an image (its path, a ``str``) or a video
(a :class:`VideoRef`: path, optional segment, and the :class:`FrameSampling` that turns it into frames).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

if TYPE_CHECKING:  # annotations only
    from flamingo_eval.timing import PhaseTimer

IMAGE_TOKEN = "<image>"
END_OF_CHUNK = "<|endofchunk|>"


FRAME_RULES = ("bin_centre", "linspace")
"""How ``count`` frames are spread over a clip (:class:`FrameSampling`, docs/video.md)."""


@dataclass(frozen=True)
class FrameSampling:
    """Which frames of a clip (or of its segment) a video contributes; exactly one mode is set.

    * ``count``: that many frames spread uniformly over the clip: by ``rule`` ``bin_centre`` (the default) the
      frames shown at the centres of ``count`` equal bins of time; by ``linspace`` the frames at the indices
      ``numpy.linspace(0, N - 1, count, dtype=int)`` among the segment's N frames (other harnesses' rule);
    * ``fps`` (+ ``max``): one frame every ``1 / fps`` seconds from the start; more than ``max`` such
      timestamps are thinned to ``max`` spread uniformly over the clip.

    A clip holding fewer frames than requested gives all its frames and repeats the last one
    (``flamingo_eval/video``; docs/video.md).
    """

    count: int | None = 8
    """Frames per clip, uniform over it (the default mode, 8 frames)."""
    fps: float | None = None
    """Frames per second of clip time (set ``count`` to None)."""
    max: int | None = None
    """Upper bound on frames in ``fps`` mode (required there)."""
    rule: str = "bin_centre"
    """How ``count`` frames are spread: ``bin_centre`` or ``linspace`` (:data:`FRAME_RULES`)."""

    def __post_init__(self) -> None:
        if (self.count is None) == (self.fps is None):
            raise ValueError("frame sampling needs exactly one of count or fps")
        if self.rule not in FRAME_RULES:
            raise ValueError(f"frames.rule must be one of {', '.join(FRAME_RULES)}, got '{self.rule}'")
        if self.rule != "bin_centre" and self.count is None:
            raise ValueError(f"frames.rule {self.rule} spreads frames.count frames; with frames.fps leave it out")
        if self.count is not None and self.count < 1:
            raise ValueError(f"frames.count must be >= 1, got {self.count}")
        if self.fps is not None and (self.fps <= 0 or self.max is None or self.max < 1):
            raise ValueError(f"frames.fps must be > 0 with frames.max >= 1, got fps={self.fps} max={self.max}")

    @classmethod
    def uniform(cls, count: int) -> FrameSampling:
        """``count`` frames uniform over the clip."""
        return cls(count=count)

    @classmethod
    def at_fps(cls, fps: float, max: int) -> FrameSampling:
        """One frame every ``1 / fps`` seconds, at most ``max`` frames."""
        return cls(count=None, fps=fps, max=max)

    def describe(self) -> str:
        """Stable text form (part of cache keys and prompt hashes): ``count=8``, ``count=8,linspace`` or
        ``fps=3,max=30`` (the default rule is not written, so earlier keys and hashes stay valid)."""
        if self.count is None:
            return f"fps={self.fps:g},max={self.max}"
        return f"count={self.count}" + ("" if self.rule == "bin_centre" else f",{self.rule}")


@dataclass(frozen=True)
class VideoRef:
    """A video media item: one ``<image>`` slot, F frames through the vision encoder, N latents."""

    path: str
    """The video file."""
    start: float | None = None
    """Segment start in seconds of clip time (None = the beginning)."""
    end: float | None = None
    """Segment end in seconds (None = the end of the clip; clamped to it when beyond)."""
    frames: FrameSampling = field(default_factory=FrameSampling)
    """How the clip (or segment) becomes frames."""

    def describe(self) -> str:
        """The file name, segment and sampling (not the folder): stable across machines and data roots."""
        seg = "" if self.start is None and self.end is None else f"@{self.start}-{self.end}"
        return f"{PurePath(self.path).name}{seg}#{self.frames.describe()}"


Media: TypeAlias = str | VideoRef
"""One media item: an image path or a :class:`VideoRef`."""


def media_path(item: Media) -> str:
    """The file behind a media item."""
    return item.path if isinstance(item, VideoRef) else item


def media_name(item: Media) -> str:
    """Machine-independent identity of a media item: the image file name, or :meth:`VideoRef.describe`."""
    return item.describe() if isinstance(item, VideoRef) else PurePath(item).name


@dataclass(frozen=True)
class Sample:
    """One benchmark item as read from the official files."""

    id: str
    """Unique and stable within a benchmark split (e.g. the VQA question_id)."""
    media: tuple[Media, ...]
    """Ordered media shown with this item: image paths and/or :class:`VideoRef` videos."""
    fields: Mapping[str, Any] = field(default_factory=dict)
    """Template fields: question, caption, text, class name, ... (``{name}`` in templates)."""
    references: tuple[str, ...] = ()
    """Ground truth: annotator answers, reference captions, or the label string."""
    label: int | None = None
    """Class index for classification / ranking tasks (index into the candidate list)."""


@dataclass(frozen=True)
class InterleavedPrompt:
    """Text with ``<image>`` slots plus the media they stand for, in order."""

    text: str
    """Full prompt text; ``text.count(IMAGE_TOKEN) == len(media)`` always holds."""
    media: tuple[Media, ...]
    """Media (image paths, videos) in the order of the ``<image>`` slots."""
    demo_ids: tuple[str, ...] = ()
    """Ids of the demonstrations actually used, in prompt order."""
    dropped_demos: int = 0
    """Demonstrations dropped (from the far end) to fit the model context."""

    def __post_init__(self) -> None:
        if self.text.count(IMAGE_TOKEN) != len(self.media):
            raise ValueError(
                f"prompt has {self.text.count(IMAGE_TOKEN)} {IMAGE_TOKEN} slots but {len(self.media)} media"
            )


@dataclass(frozen=True)
class GenerateRequest:
    """Open-ended generation for one prompt."""

    prompt: InterleavedPrompt
    max_new_tokens: int = 5
    """Upper bound on generated tokens (the stop token included)."""
    num_beams: int = 3
    """1 = greedy decoding."""
    length_penalty: float = 0.0
    """Beam score = sum log-prob / (generated length ** length_penalty), as in HF generate."""
    stop: tuple[str, ...] = (END_OF_CHUNK,)
    """Strings whose token ends a sequence (the model maps them to token ids)."""


@dataclass(frozen=True)
class RankRequest:
    """Score each candidate continuation of one prompt."""

    prompt: InterleavedPrompt
    candidates: tuple[str, ...]
    """Continuations, tokenised without a leading space and appended right after the prompt."""
    normalize_length: bool = True
    """True: mean per-token log-prob; False: summed log-prob."""


@runtime_checkable
class EvalModel(Protocol):
    """What the runner needs from a model.

    ``generate`` returns decoded continuations with the stop string and everything after it removed.
    ``rank`` returns one score per candidate (higher is better). Media are mapped to ``<image>`` slots in
    order (a video fills one slot with all its frames); batching and padding (left) are the model's business
    and never change results mathematically (numerically only by float noise between padded shapes:
    docs/protocol.md, "Batch size and float noise").
    """

    model_id: str
    """The name the record and the progress line give the model (``model.name``)."""

    def generate(self, requests: list[GenerateRequest]) -> list[str]:
        """One decoded continuation per request, cut at its first stop string."""
        ...

    def rank(self, requests: list[RankRequest]) -> list[list[float]]:
        """One score per candidate of each request (higher is better)."""
        ...

    def fingerprint(self) -> str:
        """A hash of the weights: a run resumes only with the model that started it."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this model's context (prompt fitting and answer room)."""
        ...

    @property
    def max_context(self) -> int:
        """Context length in tokens; demos are dropped to fit it."""
        ...

    @property
    def precision(self) -> str:
        """The weights' dtype as configs name it (``fp32``, ``bf16``, ...): what ``model.precision`` became."""
        ...

    @property
    def placement(self) -> str | None:
        """Where a model split over devices runs its parts; None for a model on one device."""
        ...

    @property
    def device(self) -> Any:
        """The device inputs go to (a ``torch.device`` or its name): the record names its GPU from it."""
        ...

    @property
    def timer(self) -> PhaseTimer | None:
        """Seconds per model phase (vision, prefill, decode, candidates) for the record; None: not timed."""
        ...

    def media_stats(self) -> dict[str, Any]:
        """Video decoding counters of this process for the record (``{}``: nothing to report)."""
        ...
