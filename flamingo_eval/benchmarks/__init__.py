"""Benchmark adapters (one module per format family); importing this registers them."""

from flamingo_eval.benchmarks.base import Adapter, check_unique, read_json
from flamingo_eval.benchmarks.captioning import CaptionsAdapter
from flamingo_eval.benchmarks.classification import (
    HatefulMemesAdapter,
    ImageNetFolderAdapter,
    imagenet_classnames,
)
from flamingo_eval.benchmarks.dialogue import VisDialAdapter
from flamingo_eval.benchmarks.submission import submission_entries, validate_submission, write_submission
from flamingo_eval.benchmarks.video import EasyVideoAdapter, VideoAdapter, VideoQAAdapter
from flamingo_eval.benchmarks.video_tasks import VideoCaptionAdapter, VideoClassAdapter
from flamingo_eval.benchmarks.vqa import EasyVQAAdapter, TextVQAAdapter, VizWizAdapter, VQAAdapter

__all__ = [
    "Adapter",
    "CaptionsAdapter",
    "EasyVQAAdapter",
    "EasyVideoAdapter",
    "HatefulMemesAdapter",
    "ImageNetFolderAdapter",
    "TextVQAAdapter",
    "VQAAdapter",
    "VideoAdapter",
    "VideoCaptionAdapter",
    "VideoClassAdapter",
    "VideoQAAdapter",
    "VisDialAdapter",
    "VizWizAdapter",
    "check_unique",
    "imagenet_classnames",
    "read_json",
    "submission_entries",
    "validate_submission",
    "write_submission",
]
