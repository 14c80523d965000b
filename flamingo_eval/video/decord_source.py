"""decord as a second video decoder (``FLAMINGO_EVAL_VIDEO_DECODER=decord``), when the user has it installed.

decord (``pip install decord``; not a dependency) knows every frame's presentation time up front, so the
picker is fed timestamps only and just the chosen frames are decoded (decord seeks to their keyframes
itself). Frame choice is the shared rule (``video/sampling.py``); pixels may differ from PyAV's in the last
levels (decord's own FFmpeg and colour conversion). Not handled by decord: rotation metadata (frames come
out as stored). Large frames are decoded at full size, one at a time, then scaled down.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

from PIL import Image

from flamingo_eval.errors import UserError
from flamingo_eval.registry import VIDEO_DECODERS
from flamingo_eval.video.decoders import VideoDecoder, VideoInfo, VideoSource, bounded_size
from flamingo_eval.video.sampling import FramePicker

__all__ = ["DecordDecoder"]


@VIDEO_DECODERS.register("decord")
class DecordDecoder(VideoDecoder):
    """decord's ``VideoReader`` behind the :class:`VideoDecoder` interface."""

    name = "decord"

    def version(self) -> str:
        return f"decord {_decord().__version__}"

    def open(self, path: Path) -> VideoSource:
        decord = _decord()
        try:
            reader = decord.VideoReader(str(path), num_threads=0)
        except Exception as err:  # noqa: BLE001 - decord raises plain RuntimeErrors (and its own) for bad files
            kind = "has no video stream" if "video stream" in str(err).lower() else "is not a readable video file"
            raise UserError(f"video {path} {kind} (decord: {str(err).splitlines()[0][:120]}); re-download it or "
                            "point the benchmark at the video files") from None
        return _DecordSource(reader, path)


def _decord() -> Any:
    try:
        import decord
    except ImportError:
        raise UserError("video decoder 'decord' is selected ($FLAMINGO_EVAL_VIDEO_DECODER) but decord is not "
                        "installed; pip install decord, or unset the variable to use PyAV") from None
    return decord


class _DecordSource(VideoSource):
    def __init__(self, reader: Any, path: Path) -> None:
        self.reader, self.path = reader, path
        n = len(reader)
        if n == 0:
            raise UserError(f"video {path} has no decodable frame; re-download it")
        stamps = reader.get_frame_timestamp(range(n))  # (n, 2): start and end seconds per frame
        self.times = [float(t) for t in stamps[:, 0]]
        height, width = reader[0].shape[:2]
        self.info = VideoInfo(duration=float(stamps[-1, 1]) - self.times[0], width=int(width), height=int(height),
                              fps=float(reader.get_avg_fps()) or None)

    def close(self) -> None:
        self.reader = None

    def feed(self, start: float, picker: FramePicker, max_pixels: int) -> None:
        t0 = self.times[0]
        i = max(0, bisect.bisect_right(self.times, start + t0) - 1)  # the frame shown at the segment start
        while i < len(self.times):
            if not picker.offer(self.times[i] - t0, self._converter(i, max_pixels)):
                return
            hint = picker.seek_hint()
            # Only timestamps are offered, so jumping ahead is free: go to the frame shown at the next time.
            i = max(i + 1, bisect.bisect_right(self.times, hint + t0) - 1) if hint is not None else i + 1

    def _converter(self, index: int, max_pixels: int) -> Any:
        def convert() -> Image.Image:
            img = Image.fromarray(self.reader[index].asnumpy())
            size = bounded_size(img.width, img.height, max_pixels)
            return img if size == img.size else img.resize(size, Image.Resampling.BOX)

        return convert
