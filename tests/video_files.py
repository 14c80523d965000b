"""Small video files written with PyAV at test time (valid, variable-rate, rotated, 8K, audio-only, broken)."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import numpy as np


def color_frames(n: int, w: int = 32, h: int = 32) -> list[np.ndarray]:
    """Frame i is flat grey level 20 * i (so a decoded frame tells its index), with a red top-left marker."""
    out = []
    for i in range(n):
        a = np.full((h, w, 3), 20 * i, np.uint8)
        a[: h // 4, : w // 4] = (255, 0, 0)
        out.append(a)
    return out


def frame_index(img) -> int:  # type: ignore[no-untyped-def]
    """The index written by :func:`color_frames`, read back from the frame's bottom-right quarter."""
    a = np.asarray(img)
    return int(round(float(a[a.shape[0] // 2 :, a.shape[1] // 2 :].mean()) / 20))


CODECS = {".webm": ("libvpx-vp9", {"crf": "10", "b:v": "0", "deadline": "realtime"}),
          ".avi": ("mpeg4", {"qscale": "2"})}
"""Codec by container (extension, any case); anything else (.mp4, .mkv, .mov) is H.264."""


def write_video(path: Path, frames: list[np.ndarray], fps: int = 8, times: list[float] | None = None) -> Path:
    """A clip in the container ``path``'s extension names: H.264 (MP4/MKV), VP9 (WebM) or MPEG-4 Part 2 (AVI);
    ``times`` (seconds) gives each frame its own presentation time (variable frame rate)."""
    import av

    codec, options = CODECS.get(path.suffix.lower(), ("libx264", {"preset": "ultrafast", "crf": "10"}))
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = dict(options)
        if times is not None:
            s.codec_context.time_base = Fraction(1, 1000)
        for i, arr in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = int(round(times[i] * 1000)), Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def rotate_90_clockwise_on_display(path: Path) -> Path:
    """Write a phone-style display matrix into the MP4 track header (players turn it 90 degrees clockwise)."""
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd") + 44  # version 0 tkhd: the 3x3 matrix follows 40 bytes of fields
    data[at : at + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(data))
    return path


def write_8k(path: Path) -> Path:
    """One flat 7680 x 4320 frame, built in YUV directly (no 8K RGB array is ever made)."""
    import av

    frame = av.VideoFrame(7680, 4320, "yuv420p")
    for plane, value in zip(frame.planes, (81, 90, 240)):  # BT.601 red-ish
        plane.update(bytes([value]) * plane.buffer_size)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=1)
        s.width, s.height, s.pix_fmt = 7680, 4320, "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "40"}
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def write_audio_only(path: Path) -> Path:
    """A WAV file with a short sine: a media file without a video stream."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        samples = (np.sin(np.arange(800) / 5) * 3000).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def zero_payload(src: Path, dst: Path) -> Path:
    """``src`` with its media data zeroed: headers intact, not one decodable frame."""
    data = bytearray(src.read_bytes())
    at = data.find(b"mdat")
    size = int.from_bytes(data[at - 4 : at], "big")
    data[at + 4 : at - 4 + size] = bytes(size - 8)
    dst.write_bytes(bytes(data))
    return dst
