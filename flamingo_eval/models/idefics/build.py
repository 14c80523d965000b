"""``model.architecture: idefics`` -> a ready eval model (the same engine classes as OpenFlamingo); registered by
``models/architectures/idefics.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flamingo_eval.errors import UserError
from flamingo_eval.models.eval_model import FlamingoEvalModel

if TYPE_CHECKING:  # annotations only
    from flamingo_eval.config import ModelCfg

OPENFLAMINGO_ONLY = ("checkpoint",)
"""ModelCfg fields an IDEFICS directory makes meaningless (its bridge comes with the weights)."""


def build_idefics(cfg: ModelCfg, batch_size: int | None = None) -> FlamingoEvalModel:
    """Load an IDEFICS HF directory (``model.lm.path``: a local dir or an already-cached hub id).

    Vision tower, perceiver, cross-attention and LM all come from that directory; ``model.lm.tokenizer``
    may point at another tokenizer directory. ``model.engine: reference`` gives the plain loop.
    """
    from flamingo_eval.models.idefics.loading import load_idefics, load_idefics_tokenizer, resolve_idefics_dir
    from flamingo_eval.models.reference import ReferenceEvalModel
    from flamingo_eval.models.runtime import resolve_device, resolve_precision, weights_fingerprint

    for name in OPENFLAMINGO_ONLY:
        if getattr(cfg, name):
            raise UserError(f"model {cfg.name}: model.{name} is an OpenFlamingo option; an IDEFICS directory "
                            "(model.lm.path) holds all its weights")
    if cfg.device_map not in (None, "", "none"):
        raise UserError(f"model {cfg.name}: model.device_map splits OpenFlamingo-layout models only; run IDEFICS "
                        "on one device (model.device=cuda) and scale out with torchrun")
    if not cfg.lm.path:
        raise UserError(f"model {cfg.name}: set model.lm.path=DIR (an IDEFICS Hugging Face model directory)")
    if cfg.engine not in ("fast", "reference"):
        raise UserError(f"model.engine must be fast or reference, got '{cfg.engine}'")
    root = resolve_idefics_dir(str(cfg.lm.path), cfg.name)
    tok = load_idefics_tokenizer(cfg.lm.tokenizer or root)
    device = resolve_device(cfg.device)
    dtype = resolve_precision(cfg.precision, "cuda" if str(device).startswith("cuda") else str(device))
    model, _ = load_idefics(root, dtype=dtype, device=device, tokenizer=tok)
    from flamingo_eval.models.idefics_preprocessor import PROCESSOR_KEYS, read_preprocessor

    pixels = {**read_preprocessor(root), **{k: cfg.vision.options[k] for k in PROCESSOR_KEYS
                                            if k in cfg.vision.options}}  # recorded at start-up when local
    enc = model.vision_encoder
    enc.image_mean = tuple(pixels.get("image_mean", enc.image_mean))
    enc.image_std = tuple(pixels.get("image_std", enc.image_std))
    cls = ReferenceEvalModel if cfg.engine == "reference" else FlamingoEvalModel
    return cls(model, tok, model.vision_encoder.preprocess, model_id=cfg.name,
               fingerprint=weights_fingerprint(model), batch_size=batch_size or cfg.batch_size,
               max_context=cfg.max_context, device=device, dtype=dtype,
               latent_cache_bytes=cfg.latent_cache_mb << 20, latent_cache_dir=cfg.latent_cache_dir,
               vision_batch_size=cfg.vision_batch_size)
