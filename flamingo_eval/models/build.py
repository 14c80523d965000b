"""Model configs -> a ready eval model, by the architecture the config names (``model.architecture``).

Each architecture registers its own config checks and builder (``models/architectures/``); this module
knows none of them by name. The OpenFlamingo builder's parts stay importable from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flamingo_eval.errors import UserError
from flamingo_eval.models.architectures import get_architecture
from flamingo_eval.models.flamingo_build import (
    assemble,
    build_decoder,
    load_tokenizer,
    load_weights,
    place,
    special_ids,
)
from flamingo_eval.models.model_dir import checkpoint_path
from flamingo_eval.models.runtime import DTYPES, resolve_device, resolve_precision, weights_fingerprint

if TYPE_CHECKING:  # annotations only
    from flamingo_eval.config import ModelCfg
    from flamingo_eval.types import EvalModel

__all__ = ["DTYPES", "assemble", "build_decoder", "build_model", "checkpoint_path", "load_tokenizer", "load_weights",
           "place", "resolve_device", "resolve_precision", "special_ids", "weights_fingerprint"]


def build_model(cfg: ModelCfg, batch_size: int | None = None) -> EvalModel:
    """The eval model of ``cfg``, built by its architecture (``ARCHITECTURES``); weights are fingerprinted.

    The architecture completes ``cfg`` first where it needs to (a model directory, layouts read from the
    checkpoint; a no-op on an already resolved config).

    Args:
        cfg: The model config.
        batch_size: Prompts per model call; None: ``model.batch_size``.

    Raises:
        UserError: an unknown architecture or a bad value or file, in one line.
    """
    if cfg.vision_batch_size < 1:
        raise UserError(f"model.vision_batch_size must be >= 1, got {cfg.vision_batch_size}")
    return get_architecture(cfg.architecture).build(cfg, batch_size)
