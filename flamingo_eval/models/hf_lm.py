"""Load a Hugging Face causal LM (local directory or in-memory model) into one of our decoders.

Weights are matched by name with strict accounting: every parameter of our decoder must come from the
checkpoint and every checkpoint tensor must be used, except a tied output head (same tensor as the input
embeddings) and known non-parameter buffers (rotary ``inv_freq``, NeoX ``attention.bias`` /
``masked_bias`` causal masks). Anything else raises a :class:`UserError` that names the keys, because a
silently ignored tensor (OpenFlamingo's ``strict=False``) is how a head goes missing unnoticed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flamingo_eval.errors import UserError
from flamingo_eval.models.decoders import Decoder
from flamingo_eval.models.hf_config import read_hf_config
from flamingo_eval.models.weight_files import read_state_file
from flamingo_eval.registry import DECODERS


def family_table() -> dict[str, str]:
    """HF ``config.json`` ``model_type`` -> decoder family, from each registered family's ``model_types``.

    Raises:
        ValueError: Two families claim the same ``model_type`` (a programming error, caught by the tests).
    """
    table: dict[str, str] = {}
    for family in DECODERS.names():
        for model_type in DECODERS.get(family).model_types:
            if table.setdefault(model_type, family) != family:
                raise ValueError(f"model_type {model_type!r} is claimed by the decoder families "
                                 f"{table[model_type]} and {family}")
    return table


IGNORED_KEYS = re.compile(
    r"(rotary_emb\.inv_freq|rotary_emb\.original_inv_freq|attention\.masked_bias|"
    r"layers\.\d+\.attention\.bias|attn\.masked_bias)$"
)
"""Non-parameter buffers some checkpoints carry (recomputed by us, never trained)."""

TIED_HEAD_KEYS = ("lm_head.weight", "embed_out.weight")
"""Head names (after ``hf_key_map``) that are dropped when our decoder ties the head to the embeddings."""

_SHOW = 8  # how many key names an error message lists


def decoder_class(config: Mapping[str, Any], source: str = "LM config") -> type[Decoder]:
    """The decoder class for an HF config dict, from its ``model_type``."""
    model_type = str(config.get("model_type", ""))
    table = family_table()
    if model_type not in table:
        known = ", ".join(sorted(table))
        got = f"unsupported LM model_type {model_type!r}" if "model_type" in config else "no model_type field"
        raise UserError(f"{source}: {got}; supported: {known} "
                        "(add a family: docs/adding_a_model.md)")
    cls: type[Decoder] = DECODERS.get(table[model_type])
    return cls


def load_hf_decoder(path: str | Path, dtype: torch.dtype = torch.float32) -> Decoder:
    """Build our decoder from a local HF model directory (``config.json`` + weights).

    Weights: ``model.safetensors``, sharded ``model.safetensors.index.json``, or ``pytorch_model.bin``
    (also sharded), the latter read with ``torch.load(weights_only=True)``.

    Raises:
        UserError: missing files, unsupported ``model_type``, or any missing/unexpected/mis-shaped key.
    """
    root = Path(path)
    config = read_hf_config(root)
    cls = decoder_class(config, source=str(root / "config.json"))
    state = read_hf_state_dict(root)
    return build_decoder(cls, config, state, dtype, source=str(root))


def decoder_from_hf_model(hf_model: torch.nn.Module, dtype: torch.dtype = torch.float32) -> Decoder:
    """Copy an in-memory HF ``PreTrainedModel`` into our decoder (tests, asset conversion)."""
    config = hf_model.config.to_dict()  # type: ignore[union-attr, operator]
    cls = decoder_class(config)
    state = {k: v.detach() for k, v in hf_model.state_dict().items()}
    return build_decoder(cls, config, state, dtype, source=type(hf_model).__name__)


def read_hf_state_dict(root: Path) -> dict[str, Tensor]:
    """All tensors of an HF checkpoint directory, shards merged, on CPU."""
    for index_name, single in (("model.safetensors.index.json", "model.safetensors"),
                               ("pytorch_model.bin.index.json", "pytorch_model.bin")):
        index = root / index_name
        if index.is_file():
            shards = _shards(index)
            state: dict[str, Tensor] = {}
            for shard in shards:
                state.update(_read_file(root / shard))
            return state
        if (root / single).is_file():
            return _read_file(root / single)
    raise UserError(f"{root}: no model.safetensors, pytorch_model.bin or shard index found")


def _shards(index: Path) -> list[str]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return sorted({str(v) for v in weight_map.values()})
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise UserError(f"LM shard index {index} is not a JSON object with a weight_map; download it again"
                        ) from None


def _read_file(file: Path) -> dict[str, Tensor]:
    fix = "download the LM directory again (every shard its index names)"
    state = read_state_file(file, "LM weights file", fix)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UserError(f"LM weights file {file}: expected a state dict of tensors, got a {type(state).__name__}")
    return state


def build_decoder(cls: type[Decoder], config: Mapping[str, Any], state: Mapping[str, Tensor],
                  dtype: torch.dtype, source: str) -> Decoder:
    """Instantiate ``cls`` from ``config`` without initialising weights, then assign ``state`` strictly."""
    try:
        with torch.device("meta"):
            decoder = cls.from_hf_config(dict(config))
    except (KeyError, TypeError, ValueError) as e:  # a field missing or of the wrong type in config.json
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        names = re.findall(r"'(\w+)'", text) if isinstance(e, TypeError) and "missing" in text else []
        detail = f"missing field {e}" if isinstance(e, KeyError) else f"missing field(s) {names}" if names else text
        raise UserError(f"{source}: config.json does not describe a {cls.family} LM ({detail})") from None
    ours = unique_state(decoder)
    renamed = map_state_dict(cls, state, tied=decoder.output_embeddings() is None)
    _check_keys(ours, renamed, source, cls.family)
    result = decoder.load_state_dict({k: v.to(dtype) for k, v in renamed.items()}, strict=False, assign=True)
    # Only alias names of already-loaded tensors (a module registered twice) may be reported missing.
    leftover = [k for k in result.missing_keys if k in ours] + list(result.unexpected_keys)
    if leftover:
        raise UserError(f"{source}: could not load {leftover[:_SHOW]} into the {cls.family} decoder")
    return decoder.to(dtype).eval()


def unique_state(module: nn.Module) -> dict[str, Tensor]:
    """Parameters and buffers by name, each tensor once (first name), whatever submodules are registered twice."""
    seen: set[int] = set()
    out: dict[str, Tensor] = {}
    for key, value in module.state_dict(keep_vars=True).items():
        if id(value) not in seen:
            seen.add(id(value))
            out[key] = value
    return out


def map_state_dict(cls: type[Decoder], state: Mapping[str, Tensor], tied: bool) -> dict[str, Tensor]:
    """HF names -> ours via ``cls.hf_key_map``, dropping known buffers and (when tied) the head copy."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if IGNORED_KEYS.search(key):
            continue
        new = cls.hf_key_map(key)
        if tied and new in TIED_HEAD_KEYS:
            continue
        if new in out:
            raise UserError(f"{cls.family}: checkpoint keys collide after renaming: {key!r} -> {new!r}")
        out[new] = value
    return out


def _check_keys(ours: Mapping[str, Tensor], theirs: Mapping[str, Tensor], source: str, family: str) -> None:
    missing = sorted(set(ours) - set(theirs))
    unexpected = sorted(set(theirs) - set(ours))
    bad_shape = sorted(f"{k} (checkpoint {tuple(theirs[k].shape)}, model {tuple(ours[k].shape)})"
                       for k in set(ours) & set(theirs) if theirs[k].shape != ours[k].shape)
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", bad_shape)):
        if keys:
            more = f" ... (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
            problems.append(f"{label}: {', '.join(keys[:_SHOW])}{more}")
    if problems:
        raise UserError(f"{source}: weights do not match the {family} decoder; " + "; ".join(problems))
