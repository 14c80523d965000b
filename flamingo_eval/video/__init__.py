"""Video media: frame sampling, decoders (PyAV by default), media keys, the easyvideo generator.

See docs/video.md for the sampling rules, the decoder interface and the bad-input policy.
"""

from flamingo_eval.video.decoders import (
    Clip,
    PyAVDecoder,
    VideoDecoder,
    VideoInfo,
    VideoSource,
    bounded_size,
    get_decoder,
    max_frame_pixels,
    upright,
)
from flamingo_eval.video.decord_source import DecordDecoder
from flamingo_eval.video.media import MediaLoader, media_key, thumbnail
from flamingo_eval.video.sampling import FramePicker, Picked, clip_bounds, plan_times

__all__ = [
    "Clip",
    "DecordDecoder",
    "FramePicker",
    "MediaLoader",
    "Picked",
    "PyAVDecoder",
    "VideoDecoder",
    "VideoInfo",
    "VideoSource",
    "bounded_size",
    "clip_bounds",
    "get_decoder",
    "max_frame_pixels",
    "media_key",
    "plan_times",
    "thumbnail",
    "upright",
]
