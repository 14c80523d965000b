"""``model.architecture: idefics``: Hugging Face M4's Flamingo reproduction on our engine.

Config: ``model.lm.path`` (an IDEFICS Hugging Face directory or a cached hub id), ``model.lm.tokenizer``,
``model.vision.options`` (its image processor's values); built by ``models/idefics/build.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flamingo_eval.models.architecture import Architecture, Given, register_architecture

if TYPE_CHECKING:  # annotations only
    from flamingo_eval.config import ModelCfg
    from flamingo_eval.types import EvalModel


def _resolve(cfg: ModelCfg, given: Given) -> None:
    """A local IDEFICS directory: named after itself (unless ``model.name`` is given); its image processor's
    ``image_mean`` / ``image_std`` / ``image_size`` go into ``model.vision.options`` (recorded, then applied);
    a local tokenizer directory must hold tokenizer files."""
    from flamingo_eval.models.idefics_preprocessor import read_preprocessor
    from flamingo_eval.models.tokenizer_check import check_tokenizer_dir

    root = Path(cfg.lm.path).expanduser() if cfg.lm.path else None
    if root is not None and root.is_dir():  # a hub id: found in the cache (and its processor read) when it loads
        if given.cli("model.lm.path") and not given.cli("model.name"):
            cfg.name = root.resolve().name
        for key, value in read_preprocessor(root).items():
            if not given(f"model.vision.options.{key}", cfg.vision.options.get(key)):
                cfg.vision.options[key] = value
    check_tokenizer_dir(cfg.lm.tokenizer or cfg.lm.path)


def _build(cfg: ModelCfg, batch_size: int | None) -> EvalModel:
    from flamingo_eval.models.idefics.build import build_idefics

    return build_idefics(cfg, batch_size)


IDEFICS = register_architecture(Architecture("idefics", resolve=_resolve, build=_build))
