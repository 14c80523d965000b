"""IDEFICS (Hugging Face M4's Flamingo reproduction) on our engine: model, checkpoint loading, builder.

``build_idefics`` builds the ``idefics`` model architecture (``model.architecture: idefics``), registered by
``flamingo_eval/models/architectures/idefics.py``.
"""

from flamingo_eval.models.idefics.build import build_idefics
from flamingo_eval.models.idefics.loading import (
    IdeficsLoadReport,
    load_idefics,
    load_idefics_tokenizer,
    map_idefics_key,
    resolve_idefics_dir,
)
from flamingo_eval.models.idefics.model import Idefics, IdeficsConfig

__all__ = ["Idefics", "IdeficsConfig", "IdeficsLoadReport", "build_idefics", "load_idefics",
           "load_idefics_tokenizer", "map_idefics_key", "resolve_idefics_dir"]
