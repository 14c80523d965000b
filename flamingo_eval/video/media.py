"""Media items -> frames, content keys and decoding statistics (images and videos alike).

An image is a one-frame media item; a :class:`~flamingo_eval.types.VideoRef` yields the frames its sampling
asks for. :func:`media_key` identifies what the vision encoder sees: the file's content hash, plus for a
video its segment, sampling, decoder and frame-size bound, so latents of differently sampled clips never mix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from PIL import Image

from flamingo_eval.media import content_hash, load_image
from flamingo_eval.types import FrameSampling, Media, VideoRef, media_name
from flamingo_eval.video.decoders import check_file, get_decoder, max_frame_pixels

__all__ = ["MediaLoader", "media_key", "thumbnail"]


def media_key(item: Media) -> str:
    """64 hex characters naming the frames of ``item`` (image: the file's SHA-256).

    Raises:
        UserError: the file does not exist.
    """
    if not isinstance(item, VideoRef):
        return content_hash(item)
    digest = content_hash(check_file(item.path))  # a missing or empty video: the video error, naming it
    spec = f"{digest}|{item.start}|{item.end}|{item.frames.describe()}|{get_decoder().name}|{max_frame_pixels()}"
    return hashlib.sha256(spec.encode()).hexdigest()


def thumbnail(item: Media) -> Image.Image:
    """One image standing for a media item: the image itself, or a video's middle frame (of its segment).

    RICES compares these (a CLIP image embedding per demo candidate).
    """
    if not isinstance(item, VideoRef):
        return load_image(item)
    return get_decoder().decode(replace(item, frames=FrameSampling.uniform(1))).frames[0]


@dataclass
class MediaLoader:
    """Loads media as frame lists and counts what decoding cost (one per ``EvalModel``; see ``stats``)."""

    videos: int = 0
    """Video decodes (a clip decoded twice counts twice)."""
    frames: int = 0
    """Frames those decodes returned."""
    seconds: float = 0.0
    """Wall time spent decoding videos."""
    short: dict[str, str] = field(default_factory=dict)
    """Distinct clips shorter than requested (key -> name): their last frame was repeated."""

    def load(self, item: Media, key: str | None = None) -> list[Image.Image]:
        """The frames of ``item`` (one for an image). ``key`` (its :func:`media_key`) saves re-hashing."""
        if not isinstance(item, VideoRef):
            return [load_image(item)]
        clip = get_decoder().decode(item)
        self.videos += 1
        self.frames += len(clip.frames)
        self.seconds += clip.seconds
        if clip.short:
            self.short.setdefault(key or media_key(item), media_name(item))
        return list(clip.frames)

    def stats(self) -> dict[str, Any]:
        """Decoding counters for run records; empty when no video was decoded."""
        if not self.videos:
            return {}
        return {"decoder": get_decoder().version(), "videos_decoded": self.videos, "frames_decoded": self.frames,
                "decode_seconds": round(self.seconds, 3),
                "frames_per_s": round(self.frames / self.seconds, 1) if self.seconds > 0 else None,
                "short_clips": len(self.short), "short_clip_examples": sorted(self.short.values())[:10]}
