"""Typed values that cross stage boundaries (see docs/ARCHITECTURE.md).

Flow: adapter -> ``Sample`` -> prompt builder -> ``InterleavedPrompt`` -> ``GenerateRequest`` /
``RankRequest`` -> ``EvalModel`` -> ``Prediction``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

IMAGE_TOKEN = "<image>"
END_OF_CHUNK = "<|endofchunk|>"


@dataclass(frozen=True)
class Sample:
    """One benchmark item as read from the official files."""

    id: str
    """Unique and stable within a benchmark split (e.g. the VQA question_id)."""
    media: tuple[str, ...]
    """Ordered image paths (or video frame refs) shown with this item."""
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
    media: tuple[str, ...]
    """Media paths in the order of the ``<image>`` slots."""
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
    order; batching and padding (left) are the model's business and never change results mathematically
    (numerically only by float noise between padded shapes: docs/protocol.md, "Batch size and float noise").
    """

    model_id: str

    def generate(self, requests: list[GenerateRequest]) -> list[str]: ...

    def rank(self, requests: list[RankRequest]) -> list[list[float]]: ...

    def fingerprint(self) -> str: ...

    def count_tokens(self, text: str) -> int: ...

    @property
    def max_context(self) -> int: ...
