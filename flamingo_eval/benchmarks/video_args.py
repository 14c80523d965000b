"""The ``adapter_args`` types of the video adapters (``video.py``, ``video_tasks.py``): keys, types and defaults.

These dataclasses are the only place the defaults live; the adapters read the checked instance
(``self.args``). What each key does is in the docstrings of ``video.py`` and ``video_tasks.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["QA_FIELDS", "EasyVideoArgs", "VideoArgs", "VideoCaptionArgs", "VideoClassArgs", "VideoQAArgs"]

QA_FIELDS = {"id": "id", "question": "question", "answer": "answer", "video_id": "video_id", "type": "type"}
CAPTION_FIELDS = {"id": "id", "video_id": "video_id", "captions": "captions"}


@dataclass
class VideoArgs:
    """``adapter_args`` every video adapter takes (how a row finds its clip)."""

    video_key: str = "{video_id}"
    """The lookup key, formatted from the row's fields."""
    video_pattern: str = "{name}.mp4"
    """The file under the split's video folder; ``"a|b"``: alternative layouts."""
    start_field: str | None = None
    """The row field holding the segment's start in seconds."""
    end_field: str | None = None
    """The row field holding the segment's end in seconds."""
    segment_field: str | None = None
    """One row field holding ``[start, end]`` seconds (YouCook2)."""
    max_shots: int | None = None
    """The most demos a prompt may show (RareAct: 0); null: no limit."""


@dataclass
class VideoQAArgs(VideoArgs):
    """``adapter_args`` of ``video_qa`` (the docstring of ``VideoQAAdapter`` says what each does)."""

    fields: dict[str, str] = field(default_factory=lambda: dict(QA_FIELDS))
    """Row columns for ``id``, ``question``, ``answer``, ``video_id``, ``type`` (a card names those it changes)."""
    id_format: str | None = None
    answers: list[str] | None = None
    options: list[str] | None = None
    choices: str | None = None
    choice_text: str = "choice"
    answer_is_index: bool = False
    type_regex: str | None = None
    second_answers: list[str] | None = None
    second_answer_column: str | None = None


@dataclass
class EasyVideoArgs(VideoQAArgs):
    """``adapter_args`` of ``easyvideo``: those of ``video_qa`` and ``root``."""

    root: str = "cache"
    """``cache``: the generated copy in the asset cache; or a directory holding a generated dataset."""


@dataclass
class VideoCaptionArgs(VideoArgs):
    """``adapter_args`` of ``video_captions``."""

    layout: str = "rows"
    """``rows`` (a table, one row per clip) or ``youcook2`` (the official annotation file)."""
    subsets: dict[str, str] = field(default_factory=dict)
    """``youcook2``: split -> the file's ``subset`` value (default: the split name)."""
    fields: dict[str, str] = field(default_factory=lambda: dict(CAPTION_FIELDS))
    """Row columns for ``id``, ``video_id``, ``captions`` (a card names those it changes)."""


@dataclass
class VideoClassArgs(VideoArgs):
    """``adapter_args`` of ``video_classes``."""

    layout: str = "kinetics"
    """``kinetics`` or ``rareact``."""
    class_text: str = "{verb} {noun}"
    """``rareact``: a class's name from its row fields."""
    per_class: int | None = None
    """Keep the first N clips of each class; null: all."""
