"""The ``openflamingo`` architecture's builder: a resolved model config -> a ready ``FlamingoEvalModel``
(tokenizer with Flamingo special tokens, vision encoder, decoder, bridge, weights, caches).

Registered by ``models/architectures/openflamingo.py``; ``models/build.py`` dispatches to it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import flamingo_eval.models.decoders  # noqa: F401  (registers LM families)
import flamingo_eval.models.vision  # noqa: F401  (registers vision encoders)
from flamingo_eval.errors import UserError
from flamingo_eval.models.architecture import Given
from flamingo_eval.models.assets import PACKAGED_LMS
from flamingo_eval.models.decoders.base import Decoder
from flamingo_eval.models.eval_model import FlamingoEvalModel
from flamingo_eval.models.flamingo import Flamingo, FlamingoConfig
from flamingo_eval.models.model_dir import checkpoint_path, resolve_openflamingo
from flamingo_eval.models.runtime import resolve_device, resolve_precision, weights_fingerprint
from flamingo_eval.registry import DECODERS, VISION

if TYPE_CHECKING:  # annotations only
    from flamingo_eval.config import ModelCfg

__all__ = ["assemble", "build_decoder", "build_openflamingo", "load_tokenizer", "load_weights", "place",
           "special_ids"]


def load_tokenizer(path: str, trust_remote_code: bool = False) -> Any:
    """HF tokenizer + Flamingo special tokens, added exactly as OpenFlamingo does.

    ``<|endofchunk|>`` then ``<image>`` as additional special tokens, then ``<PAD>`` as pad token when the
    tokenizer has none. Padding side is left (generation). A tokenizer that ships its own Python code
    (``auto_map``) is refused unless ``trust_remote_code`` (``model.trust_remote_code=true``); never prompts.
    """
    from transformers import AutoTokenizer

    from flamingo_eval.models.tokenizer_check import check_round_trip, tokenizer_files_problem

    problem = tokenizer_files_problem(Path(path))
    if problem:
        raise UserError(f"cannot load tokenizer: {problem}; copy the LM's tokenizer files there or pass "
                        "model.lm.tokenizer=DIR")
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise UserError(f"cannot load tokenizer from '{path}': {str(e).splitlines()[0]}") from None
    except ValueError as e:
        if "trust_remote_code" not in str(e):
            raise
        raise UserError(f"tokenizer '{path}' ships custom Python code; it was not run. Pass "
                        "model.trust_remote_code=true only if you trust its source") from None
    check_round_trip(tok, path, "pass the LM's own tokenizer directory as model.lm.tokenizer=DIR")
    tok.add_special_tokens({"additional_special_tokens": ["<|endofchunk|>", "<image>"]})
    if tok.pad_token is None:
        tok.add_special_tokens({"pad_token": "<PAD>"})
    tok.padding_side = "left"
    return tok


def special_ids(tok: Any) -> tuple[int, int]:
    """(media_token_id, eoc_token_id): the last id of encoding ``<image>`` / ``<|endofchunk|>``."""
    media = tok("<image>", add_special_tokens=False)["input_ids"][-1]
    eoc = tok("<|endofchunk|>", add_special_tokens=False)["input_ids"][-1]
    return int(media), int(eoc)


def _lm_paths(cfg: ModelCfg) -> tuple[str | None, str]:
    """(weights dir or None for random, tokenizer path); a packaged LM (``PACKAGED_LMS``) by its name."""
    lm = cfg.lm
    packaged_tok = str(PACKAGED_LMS[lm.tokenizer]()) if lm.tokenizer in PACKAGED_LMS else None
    if lm.source in PACKAGED_LMS:
        packaged = str(PACKAGED_LMS[lm.source]())
        return packaged, packaged_tok or (packaged if lm.tokenizer is None else str(lm.tokenizer))
    tok = packaged_tok or (lm.tokenizer or lm.path)
    if tok is None:
        raise UserError(f"model {cfg.name}: set model.lm.tokenizer (or model.lm.path)")
    if lm.source == "random":
        return None, str(tok)
    if lm.source != "hf" or not lm.path:
        raise UserError(f"model {cfg.name}: model.lm.source must be hf (with lm.path), {', '.join(PACKAGED_LMS)} "
                        "or random")
    return str(lm.path), str(tok)


def build_decoder(cfg: ModelCfg, weights: str | None) -> Decoder:
    """The language model of ``cfg`` as a decoder, weights from ``weights`` (None: random init)."""
    if weights is not None:
        from flamingo_eval.models.checkpoints import resolve_hf_dir
        from flamingo_eval.models.hf_lm import load_hf_decoder

        return load_hf_decoder(resolve_hf_dir(weights))  # a no-op on an already resolved local directory
    from flamingo_eval.models.hf_lm import family_table

    conf = dict(cfg.lm.config)
    model_type = str(conf.get("model_type", "llama"))
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        decoder = DECODERS.get(family_table().get(model_type, model_type)).from_hf_config(conf)
        std = float(conf.get("initializer_range", 0.02))
        for mod in decoder.modules():  # HF-style init: N(0, initializer_range), zero biases
            if isinstance(mod, (torch.nn.Linear, torch.nn.Embedding)):
                torch.nn.init.normal_(mod.weight, std=std)
            if isinstance(mod, torch.nn.Linear) and mod.bias is not None:
                torch.nn.init.zeros_(mod.bias)
        return decoder


def build_openflamingo(cfg: ModelCfg, batch_size: int | None = None) -> FlamingoEvalModel:
    """Assemble vision encoder, decoder and bridge per ``cfg``; weights are fingerprinted.

    ``cfg`` is completed first (``model.path`` directory, cross-attention layout read from the checkpoint:
    :func:`~flamingo_eval.models.model_dir.resolve_openflamingo`; a no-op on an already resolved config).
    """
    cfg = copy.deepcopy(cfg)
    resolve_openflamingo(cfg, Given(None))
    if cfg.init == "checkpoint" and not cfg.checkpoint:  # fail before loading gigabytes of LM weights
        raise UserError(f"model {cfg.name}: set model.path=DIR (an OpenFlamingo-format model directory) or "
                        "model.checkpoint=/path/to/checkpoint.pt (its perceiver and cross-attention come from the "
                        "checkpoint; see docs/openflamingo.md)")
    if cfg.checkpoint:  # a missing or bad file, named before the LM loads
        from flamingo_eval.models.model_dir import checkpoint_fixes
        from flamingo_eval.models.weight_files import check_weights_file

        path = checkpoint_path(cfg.checkpoint)
        check_weights_file(path, "checkpoint", *checkpoint_fixes(path))
    weights, tok_path = _lm_paths(cfg)
    if weights is not None:  # a bad LM directory is named before the tokenizer trips over it
        from flamingo_eval.models.checkpoints import resolve_hf_dir
        from flamingo_eval.models.hf_lm import read_hf_config

        resolved = resolve_hf_dir(weights)
        read_hf_config(Path(resolved))
        tok_path = resolved if tok_path == weights else tok_path
        weights = resolved
    tok = load_tokenizer(tok_path, trust_remote_code=cfg.trust_remote_code)
    if weights is None:
        cfg.lm.config["vocab_size"] = len(tok)
    decoder = build_decoder(cfg, weights)
    lm_vocab = decoder.vocab_size if weights is not None else None  # pretrained rows, before the Flamingo tokens
    if decoder.vocab_size != len(tok):
        decoder.resize_vocab(len(tok))
    model, vision = assemble(cfg, decoder, tok)
    load_weights(model, cfg, lm_vocab)
    device, dtype = place(model, cfg)
    from flamingo_eval.models.reference import ReferenceEvalModel

    return (ReferenceEvalModel if cfg.engine == "reference" else FlamingoEvalModel)(
        model, tok, vision.preprocess, model_id=cfg.name, fingerprint=weights_fingerprint(model),
        batch_size=batch_size or cfg.batch_size, max_context=cfg.max_context, device=device, dtype=dtype,
        latent_cache_bytes=cfg.latent_cache_mb << 20, latent_cache_dir=cfg.latent_cache_dir,
        vision_batch_size=cfg.vision_batch_size,
    )


def load_weights(model: Flamingo, cfg: ModelCfg, lm_vocab: int | None) -> None:
    """``model.checkpoint`` into the assembled model; then ``model.blind`` zeroes every gate (the text-only
    control: each block becomes an exact identity, whatever the checkpoint trained)."""
    if cfg.checkpoint:
        from flamingo_eval.models.checkpoints import load_flamingo_checkpoint

        load_flamingo_checkpoint(model, checkpoint_path(cfg.checkpoint), lm_vocab=lm_vocab,
                                 new_head_rows=cfg.new_head_rows)
    if cfg.blind:
        for blk in model.xattn.values():
            blk.attn_gate.data.zero_()  # type: ignore[union-attr,operator]
            blk.ff_gate.data.zero_()  # type: ignore[union-attr,operator]


def assemble(cfg: ModelCfg, decoder: Decoder, tok: Any) -> tuple[Flamingo, Any]:
    """(the Flamingo of ``cfg`` around ``decoder``, its vision encoder): vision tower, perceiver and gated blocks,
    initialised per ``model.init`` (seeded by ``model.seed``) before any checkpoint is loaded."""
    media_id, _ = special_ids(tok)
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed + 1)
        vision = VISION.get(cfg.vision.name)(**cfg.vision.options)
        fields = FlamingoConfig.__dataclass_fields__
        unknown = set(cfg.flamingo) - set(fields)
        if unknown:
            raise UserError(f"model {cfg.name}: unknown flamingo options {sorted(unknown)} (model.flamingo.* or the "
                            f"model directory's flamingo.json); known: {sorted(fields)}")
        model = Flamingo(vision, decoder, FlamingoConfig(**cfg.flamingo), media_id)
        if cfg.init == "random":
            for blk in model.xattn.values():
                blk.attn_gate.data.fill_(cfg.init_gate)  # type: ignore[union-attr,operator]
                blk.ff_gate.data.fill_(cfg.init_gate)  # type: ignore[union-attr,operator]
        elif cfg.init not in ("zero_gates", "checkpoint"):
            raise UserError(f"model {cfg.name}: init must be zero_gates, random or checkpoint, got '{cfg.init}'")
    return model, vision


def place(model: Flamingo, cfg: ModelCfg) -> tuple[str, torch.dtype]:
    """Cast and move the model per ``model.precision`` / ``device`` / ``device_map``; (input device, dtype)."""
    split = cfg.device_map not in (None, "", "none")
    if split:
        from flamingo_eval import distributed
        from flamingo_eval.models.placement import owned_devices, place_model

        d = distributed.current()
        devices = owned_devices(cfg.device, d.local_rank, d.local_world_size, cfg.devices)
        dtype = resolve_precision(cfg.precision, devices[0].type)
        place_model(model, cfg.device_map, devices, dtype, cfg.max_memory)
        return str(model.input_device), dtype
    device = resolve_device(cfg.device)
    dtype = resolve_precision(cfg.precision, torch.device(device).type)
    model.to(device=device, dtype=dtype)
    return device, dtype
