"""Video decoders: a small interface, PyAV (FFmpeg) as the default, and the policy every decoder shares.

A decoder turns a :class:`~flamingo_eval.types.VideoRef` into the frames its sampling asks for. Subclasses
implement one method and inherit everything else (file checks, segment bounds, the frame choice, the
bounded frame size, rotation): :meth:`VideoDecoder.open` returns a :class:`VideoSource` (a context manager)
whose ``info`` (:class:`VideoInfo`: duration in seconds of clip time, size) comes from the headers and whose
:meth:`VideoSource.feed` decodes frames in presentation order from (a keyframe before) a start time and
offers each to a :class:`~flamingo_eval.video.sampling.FramePicker` until it says stop; it may jump forward
to the picker's :meth:`~flamingo_eval.video.sampling.FramePicker.seek_hint`.

Register a decoder with ``@VIDEO_DECODERS.register("name")``; ``$FLAMINGO_EVAL_VIDEO_DECODER`` selects it
(default ``pyav``) and run records name the one used. torchcodec or decord fit the same interface.

Shared policy:

* frames larger than :func:`max_frame_pixels` (default 1920 x 1080, ``$FLAMINGO_EVAL_MAX_FRAME_PIXELS``) are
  scaled down by the decoder (aspect kept) before they become RGB images, so an 8K clip costs one decoded
  frame plus small RGB copies, never full-size RGB frames;
* rotation metadata (an MP4 display matrix, as phones write) is applied: frames come out upright;
* missing, empty, unreadable, audio-only and frameless files, and segments past the end, raise one
  :class:`UserError` naming the file.
"""

from __future__ import annotations

import math
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from flamingo_eval.errors import UserError
from flamingo_eval.registry import VIDEO_DECODERS
from flamingo_eval.types import VideoRef
from flamingo_eval.video.sampling import FramePicker, IndexPicker, Picked, clip_bounds, linspace_indices, plan_times

__all__ = ["DEFAULT_MAX_FRAME_PIXELS", "Clip", "PyAVDecoder", "VideoDecoder", "VideoInfo", "VideoSource",
           "bounded_size", "check_file", "get_decoder", "max_frame_pixels", "upright"]

DEFAULT_MAX_FRAME_PIXELS = 1920 * 1080
MAX_FRAME_PIXELS_ENV = "FLAMINGO_EVAL_MAX_FRAME_PIXELS"
DECODER_ENV = "FLAMINGO_EVAL_VIDEO_DECODER"


def max_frame_pixels() -> int:
    """Largest frame (width x height) kept at full size: ``$FLAMINGO_EVAL_MAX_FRAME_PIXELS`` or 1920 x 1080."""
    raw = os.environ.get(MAX_FRAME_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_FRAME_PIXELS
    if not raw.isdigit() or int(raw) <= 0:
        raise UserError(f"${MAX_FRAME_PIXELS_ENV}={raw!r} must be a positive pixel count, e.g. 2073600")
    return int(raw)


def bounded_size(width: int, height: int, limit: int) -> tuple[int, int]:
    """(width, height) scaled down (aspect kept, even sizes) to at most ``limit`` pixels; unchanged if it fits."""
    if width * height <= limit:
        return width, height
    scale = math.sqrt(limit / (width * height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def upright(img: Image.Image, rotation: float) -> Image.Image:
    """Apply a display-matrix rotation (degrees counterclockwise, FFmpeg's convention) to a decoded frame."""
    quarter = round(rotation / 90) % 4
    return img if quarter == 0 else img.rotate(90 * quarter, expand=True)


@dataclass(frozen=True)
class VideoInfo:
    """What a decoder learns from a file's headers."""

    duration: float
    """Seconds of clip time (the segment end when none is given)."""
    width: int
    height: int
    fps: float | None = None
    """Average frame rate when the container states one."""


@dataclass(frozen=True)
class Clip:
    """One decoded video media item."""

    frames: tuple[Image.Image, ...]
    """RGB frames in time order, exactly as many as the sampling asked for."""
    short: bool
    """Fewer frames than requested: the last one was repeated (counted in run records)."""
    seconds: float
    """Wall time of opening, decoding and converting."""
    info: VideoInfo


class VideoSource(ABC):
    """One opened video file: header facts and a frame feed (close it, or use it as a context manager)."""

    info: VideoInfo

    @abstractmethod
    def feed(self, start: float, picker: FramePicker, max_pixels: int) -> None:
        """Offer frames from clip time ``start`` (or the keyframe before it) to ``picker`` until it stops.

        Frames are offered as (clip time, a callable returning the frame as a bounded, upright RGB image).
        May be called a second time (with a fresh picker) on the same source.
        """

    @abstractmethod
    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoDecoder(ABC):
    """Base class of video decoders; see the module docstring for the contract."""

    name: str = "video"

    def version(self) -> str:
        """Library version(s), recorded in run records."""
        return self.name

    @abstractmethod
    def open(self, path: Path) -> VideoSource:
        """Open ``path`` (raise ``UserError`` for files that are not a readable video with a video stream)."""

    def decode(self, ref: VideoRef, max_pixels: int | None = None) -> Clip:
        """The frames of ``ref`` per its sampling and segment.

        Raises:
            UserError: a missing, empty, unreadable, audio-only or frameless file, or a bad segment.
        """
        t0 = time.perf_counter()
        path = check_file(ref.path)
        limit = max_frame_pixels() if max_pixels is None else max_pixels
        with self.open(path) as source:
            info = source.info
            start, end = clip_bounds(info.duration, ref.start, ref.end, str(path))
            if ref.frames.rule == "linspace":
                by_index = _pick_by_index(source, start, end, ref.frames.count or 1, limit, str(path))
                return Clip(frames=by_index.frames, short=by_index.short, seconds=time.perf_counter() - t0, info=info)
            times = plan_times(ref.frames, start, end)
            long = info.fps is not None and info.fps * (end - start) >= 2 * len(times)  # as the headers say
            picker = FramePicker(times, start, end, expect_long=long)
            source.feed(start, picker, limit)
            if picker.needs_first_frames():  # the headers promised more frames than the clip holds
                picker = FramePicker(times, start, end)
                source.feed(start, picker, limit)
            picked: Picked = picker.finish(str(path))  # may still convert the last frame: source open
        return Clip(frames=picked.frames, short=picked.short, seconds=time.perf_counter() - t0, info=info)


def _pick_by_index(source: VideoSource, start: float, end: float, count: int, limit: int, path: str) -> Picked:
    """The ``linspace`` rule: a first pass counts the segment's frames, the second takes the indices."""
    counter = IndexPicker(start, end, None)
    source.feed(start, counter, limit)
    picker = IndexPicker(start, end, linspace_indices(max(counter.seen, 1), count))
    source.feed(start, picker, limit)
    return picker.finish(path)


def check_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path when it is a non-empty file, else one ``UserError`` naming it."""
    from flamingo_eval.video.files import accepted, file_problem

    p = Path(path)
    problem = file_problem(p)
    if problem == "missing":
        raise UserError(f"video {p} does not exist (any of {accepted()} would do); check the dataset path "
                        "(`flamingo-eval data check` lists the layout)")
    if problem == "a directory, not a video file":
        raise UserError(f"video {p} is a directory, not a video file; check the dataset path")
    if problem == "empty (zero-byte) file":
        raise UserError(f"video {p} is an empty (zero-byte) file; delete it and re-download the dataset")
    if problem is not None:
        raise UserError(f"video {p} is a {problem}; fix the file (`flamingo-eval data check` lists every such video)"
                        if "link" in problem else f"video {p} is {problem}; fix the file or its permissions")
    return p


def get_decoder(name: str | None = None) -> VideoDecoder:
    """The decoder named ``name``, else ``$FLAMINGO_EVAL_VIDEO_DECODER``, else PyAV (one instance per name)."""
    key = name or os.environ.get(DECODER_ENV, "").strip() or "pyav"
    got = _INSTANCES.get(key)
    if got is None:
        got = _INSTANCES[key] = VIDEO_DECODERS.get(key)()
    return got


_INSTANCES: dict[str, VideoDecoder] = {}


@VIDEO_DECODERS.register("pyav")
class PyAVDecoder(VideoDecoder):
    """FFmpeg through PyAV (``av``; its wheel bundles FFmpeg) with FFmpeg threading on.

    Seeks to the keyframe before a segment start, stops as soon as the picker has its frames, and jumps
    forward to a far-away timestamp when the gap exceeds two observed keyframe intervals (long clips with
    sparse samples). Frames are scaled (``AREA``) and converted to RGB by FFmpeg's swscale.
    """

    name = "pyav"

    def version(self) -> str:
        import av

        return f"pyav {av.__version__} (FFmpeg {getattr(av, 'ffmpeg_version_info', '?')})"

    def open(self, path: Path) -> VideoSource:
        import av

        try:
            container = av.open(str(path), metadata_errors="ignore")
        except av.error.FFmpegError as err:
            raise UserError(f"video {path} is not a readable video file ({_reason(err)}); it is corrupt, "
                            "truncated or not a video: re-download it") from None
        try:
            return _PyAVSource(container, path)
        except BaseException:
            container.close()
            raise


class _PyAVSource(VideoSource):
    def __init__(self, container: Any, path: Path) -> None:
        self.container, self.path, self.fed = container, path, False
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no streams"]
            raise UserError(f"video {path} has no video stream (it holds {', '.join(kinds)}: an audio-only file?); "
                            "point the benchmark at the video files")
        self.stream = stream = container.streams.video[0]
        # Frame threading pays off on real frames; on tiny clips its thread start-up dominates: slices only.
        stream.thread_type = "AUTO" if stream.width * stream.height >= 256 * 256 else "SLICE"
        self.info = VideoInfo(duration=self._duration(), width=int(stream.width), height=int(stream.height),
                              fps=float(stream.average_rate) if stream.average_rate else None)

    def close(self) -> None:
        self.container.close()

    def feed(self, start: float, picker: FramePicker, max_pixels: int) -> None:
        import av
        from av.video.reformatter import VideoReformatter

        container, stream = self.container, self.stream
        tb, t0 = stream.time_base, _start_seconds(stream)
        reformatter = VideoReformatter()  # one swscale context for the clip
        if start > 0 or self.fed:  # a second pass starts over
            container.seek(int((start + t0) / tb), stream=stream, backward=True, any_frame=False)
        self.fed = True
        last, key_gap, key_prev, sought = -math.inf, 0.0, None, set()
        try:
            while True:
                target = None
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    t = float(frame.pts * tb) - t0
                    if t <= last:  # already offered (after a backward-landing seek)
                        continue
                    last = t
                    if frame.key_frame:
                        key_gap, key_prev = max(key_gap, t - (key_prev if key_prev is not None else t)), t
                    if not picker.offer(t, _converter(frame, reformatter, max_pixels)):
                        return
                    hint = picker.seek_hint()
                    if hint is not None and hint not in sought and key_gap > 0 and hint - t > max(1.0, 2 * key_gap):
                        target = hint
                        sought.add(hint)  # once per timestamp: a seek never repeats
                        break
                if target is None:
                    return  # end of stream
                container.seek(int((target + t0) / tb), stream=stream, backward=True, any_frame=False)
        except av.error.FFmpegError as err:
            where = f"after {last:.2f} s" if last > -math.inf else "at its first frame"
            raise UserError(f"video {self.path} is corrupt or truncated (decoding failed {where}: "
                            f"{_reason(err)}); re-download it") from None

    def _duration(self) -> float:
        """Stream duration, else the container's, else the last packet's end found by demuxing (no decoding)."""
        container, stream = self.container, self.stream
        if stream.duration:
            return float(stream.duration * stream.time_base)
        if container.duration:
            return float(container.duration) / 1_000_000 - max(0.0, _start_seconds(stream))
        end = 0.0
        for packet in container.demux(stream):
            if packet.pts is not None:
                end = max(end, float((packet.pts + (packet.duration or 0)) * stream.time_base))
        if end <= 0:
            raise UserError(f"video {self.path} has no decodable frame (no timed packets); re-download it")
        container.seek(0, stream=stream, backward=True, any_frame=False)
        return end - _start_seconds(stream)


def _start_seconds(stream: Any) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _converter(frame: Any, reformatter: Any, max_pixels: int) -> Any:
    """A closure turning a decoded ``av.VideoFrame`` into a bounded, upright RGB image (called lazily)."""

    def convert() -> Image.Image:
        w, h = bounded_size(frame.width, frame.height, max_pixels)
        rgb = reformatter.reformat(frame, width=w, height=h, format="rgb24", interpolation="AREA")
        rotation = getattr(frame, "rotation", 0) or 0
        return upright(rgb.to_image(), rotation if abs(rotation) <= 360 else 0)  # no/invalid matrix: as stored

    return convert


def _reason(err: Exception) -> str:
    """FFmpeg's own words for a failure ("Invalid data found when processing input"), without paths or codes."""
    text = getattr(err, "strerror", None) or str(err).strip() or type(err).__name__
    return str(text).split(":")[0]
