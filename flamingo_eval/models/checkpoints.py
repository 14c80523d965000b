"""OpenFlamingo checkpoints -> our ``Flamingo`` module, with strict accounting of every tensor.

Awadalla et al. 2023, "OpenFlamingo" (arXiv 2308.01390); layout of OpenFlamingo 2.0.1 (see
docs/openflamingo.md). A released ``checkpoint.pt`` is a flat state dict of the trained tensors only:
the perceiver, the gated cross-attention blocks and the LM's input embeddings (every name containing
``embed``); the frozen LM comes from ``lang_encoder_path`` and the vision tower from open_clip. A training
checkpoint wraps the same dict as ``{"model_state_dict": {"module.<key>": ...}, "optimizer_state_dict": ...}``.

OpenFlamingo key -> our key:

* ``perceiver.*`` -> ``perceiver.*`` (a ``perceiver.frame_embs`` gives the perceiver its per-frame embedding);
  ``vision_encoder.*`` -> ``vision_encoder.visual.*`` (open_clip tower);
* ``lang_encoder.<layers>.<i>.gated_cross_attn_layer.*`` -> ``xattn.<i>.*``;
* ``lang_encoder.<layers>.<i>.decoder_layer.*`` -> ``lang.<layers>.<i>.*`` (through the family's ``hf_key_map``);
* ``lang_encoder.<rest>`` -> ``lang.<hf_key_map(rest)>``;
* aliases of the same modules that OpenFlamingo's state dict also holds (``lang_encoder.gated_cross_attn_layers.<i>``,
  ``lang_encoder.old_decoder_blocks.<i>``, a tied head's ``lm_head.weight``) must equal their primary copy.

Accounting: every key is consumed (or is a known non-parameter buffer), shapes match, every perceiver and
cross-attention parameter comes from the checkpoint, and rows added to the vocabulary for the Flamingo tokens
come from the checkpoint. Anything else is one :class:`UserError` naming the keys (OpenFlamingo loads with
``strict=False``, which hides all of these). Files are read with safetensors or ``torch.load(weights_only=True)``:
a pickle that would import or call anything is refused before any of it runs; a file that holds no weights (a
git-lfs pointer, an HTML page, text) is named for what it is (``weight_files.py``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from flamingo_eval.errors import UserError
from flamingo_eval.models.flamingo import Flamingo
from flamingo_eval.models.hf_lm import IGNORED_KEYS, TIED_HEAD_KEYS, read_hf_config, unique_state
from flamingo_eval.models.model_dir import checkpoint_fixes
from flamingo_eval.models.weight_files import read_state_file

__all__ = ["CheckpointReport", "bridge_state_dict", "load_flamingo_checkpoint", "read_checkpoint", "resolve_hf_dir"]

NEW_HEAD_ROWS = ("error", "mean")
"""What to do when an untied LM head grew for the Flamingo tokens and the checkpoint lacks it."""

BRIDGE_PREFIXES = ("perceiver.", "xattn.")
"""Our parameters that exist only in a Flamingo checkpoint (never in the pretrained LM or vision weights)."""
ADDED_ROWS_KEY = "added_token_embeddings"
"""A (vocab - lm_vocab, D) tensor: only the input-embedding rows of the tokens added for Flamingo, in id order
(``<|endofchunk|>``, ``<image>``, ...). A bridge trained with a frozen LM (the ``mini`` bridge) stores these
instead of the whole embedding table, which keeps the file a few MB."""

_LAYER_KEY = re.compile(r"^lang_encoder\.(.+?)\.(\d+)\.(gated_cross_attn_layer|decoder_layer)\.(.+)$")
_ALIAS_KEY = re.compile(r"^lang_encoder\.(gated_cross_attn_layers|old_decoder_blocks)\.(\d+)\.(.+)$")
_SHOW = 8


@dataclass
class CheckpointReport:
    """What a load consumed (returned for logs and tests)."""

    path: str
    loaded: int = 0
    """Parameters assigned from the checkpoint."""
    aliases: int = 0
    """Duplicate keys (alias module names, a tied head copy) checked equal to their primary and consumed."""
    ignored: list[str] = field(default_factory=list)
    """Non-parameter buffers skipped (rotary ``inv_freq``, causal-mask buffers)."""
    seconds: float = 0.0


def read_checkpoint(path: Path) -> dict[str, Tensor]:
    """The flat state dict of a ``checkpoint.pt`` / training checkpoint / ``.safetensors`` file, on CPU.

    ``model_state_dict`` (training checkpoints) or ``state_dict`` is unwrapped and a DDP ``module.`` prefix
    removed. The file kind is read from its content (:mod:`flamingo_eval.models.weight_files`); pickles are
    read with ``weights_only=True``: anything beyond tensors and plain containers is refused unexecuted.

    Raises:
        UserError: missing file, a directory, a bad link, a file that is not weights (git-lfs pointer, HTML,
            text), a damaged or refused file, or one that holds no state dict.
    """
    obj = read_state_file(path, "checkpoint", *checkpoint_fixes(path))
    if isinstance(obj, dict):
        for key in ("model_state_dict", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        kind = type(obj).__name__ if not isinstance(obj, dict) else f"dict with keys {sorted(obj)[:_SHOW]}"
        raise UserError(f"checkpoint {path}: expected a state dict of tensors (or a training checkpoint with "
                        f"model_state_dict), got a {kind}")
    return {_clean(str(k)): v for k, v in obj.items()}


def _clean(key: str) -> str:
    """Drop DDP / torch.compile / activation-checkpointing wrappers from a key."""
    while key.startswith(("module.", "_orig_mod.")):
        key = key.split(".", 1)[1]
    return key.replace("._checkpoint_wrapped_module", "").replace("_fsdp_wrapped_module.", "")


def map_key(key: str, model: Flamingo) -> tuple[str, bool] | None:
    """(our key, is_alias) for an OpenFlamingo key; None when it belongs to no known part of the model."""
    family = type(model.lang)
    if key.startswith("perceiver."):
        return key, False
    if key.startswith("vision_encoder."):
        rest = key[len("vision_encoder."):]
        prefix = "vision_encoder.visual." if hasattr(model.vision_encoder, "visual") else "vision_encoder."
        return prefix + rest, False
    m = _ALIAS_KEY.match(key)
    if m:
        kind, idx, rest = m.groups()
        if kind == "gated_cross_attn_layers":
            return f"xattn.{idx}.{rest}", True
        return "lang." + family.hf_key_map(f"{_layers_path(model)}.{idx}.{rest}"), True
    m = _LAYER_KEY.match(key)
    if m:
        path, idx, kind, rest = m.groups()
        if kind == "gated_cross_attn_layer":
            return f"xattn.{idx}.{rest}", False
        return "lang." + family.hf_key_map(f"{path}.{idx}.{rest}"), False
    if key.startswith("lang_encoder."):
        new = family.hf_key_map(key[len("lang_encoder."):])
        if model.lang.output_embeddings() is None and new in TIED_HEAD_KEYS:  # tied head: a copy of the embeddings
            return "lang." + _input_embedding_key(model), True
        return "lang." + new, False
    return None


def _layers_path(model: Flamingo) -> str:
    return next(name for name, mod in model.lang.named_modules() if mod is model.lang.blocks)


def _input_embedding_key(model: Flamingo) -> str:
    emb = model.lang.input_embeddings()
    return next(name for name, mod in model.lang.named_modules() if mod is emb) + ".weight"


def _head_key(model: Flamingo) -> str | None:
    head = model.lang.output_embeddings()
    if head is None:
        return None
    return "lang." + next(name for name, mod in model.lang.named_modules() if mod is head) + ".weight"


def load_flamingo_checkpoint(model: Flamingo, path: Path, *, lm_vocab: int | None = None,
                             new_head_rows: str = "error") -> CheckpointReport:
    """Assign an OpenFlamingo checkpoint to ``model`` in place, accounting for every tensor.

    Args:
        model: A built ``Flamingo`` whose LM and vision weights are already loaded and whose vocabulary is
            already resized to the tokenizer (Flamingo tokens added).
        path: ``checkpoint.pt`` (flat), a training checkpoint (``model_state_dict``) or ``.safetensors``.
        lm_vocab: The pretrained LM's vocabulary size before the resize; when it is smaller than the model's,
            the new rows (the Flamingo tokens) must come from the checkpoint.
        new_head_rows: ``error`` (default) or ``mean``: accept that an untied head which grew keeps the mean
            of its pretrained rows for the new tokens (OpenFlamingo draws them randomly at every load).

    Raises:
        UserError: unreadable/refused file, or any missing / unexpected / mis-shaped / conflicting key.
    """
    if new_head_rows not in NEW_HEAD_ROWS:
        raise UserError(f"model.new_head_rows must be one of {NEW_HEAD_ROWS}, got '{new_head_rows}'")
    t0 = time.perf_counter()
    state = read_checkpoint(path)
    added = state.pop(ADDED_ROWS_KEY, None)
    report = CheckpointReport(path=str(path))
    _adopt_frame_embs(model, state)
    ours = unique_state(model)
    assign: dict[str, Tensor] = {}
    unexpected, conflicts = [], []
    for key, value in state.items():
        if IGNORED_KEYS.search(key):
            report.ignored.append(key)
            continue
        mapped = map_key(key, model)
        if mapped is None or mapped[0] not in ours:
            unexpected.append(key)
            continue
        target = mapped[0]
        if target in assign:
            same = assign[target].shape == value.shape and torch.equal(assign[target], value)
            if not same:
                conflicts.append(f"{key} (differs from the other copy of {target})")
            continue
        assign[target] = value
    _check(model, ours, assign, unexpected, conflicts, path, lm_vocab, new_head_rows, added)
    with torch.no_grad():
        for target, value in assign.items():
            ours[target].copy_(value)
        if added is not None:  # rows lm_vocab.. of the (possibly tied) embedding table
            model.lang.input_embeddings().weight[model.lang.vocab_size - added.shape[0]:].copy_(added)
    report.loaded = len(assign) + (added is not None)
    report.aliases = len(state) - len(report.ignored) - len(assign)
    report.seconds = time.perf_counter() - t0
    return report


def _adopt_frame_embs(model: Flamingo, state: Mapping[str, Tensor]) -> None:
    """A checkpoint with a learned per-frame embedding (Otter-style video models) gets one in the perceiver.

    OpenFlamingo names it ``perceiver.frame_embs`` (``PerceiverResampler(max_num_frames=...)``); the released
    OpenFlamingo checkpoints have none, and then the model adds none.
    """
    embs = state.get("perceiver.frame_embs")
    if embs is not None and embs.dim() == 2 and model.perceiver.frame_embs is None:
        model.perceiver.add_frame_embs(int(embs.shape[0]))
        model.cfg.max_num_frames = int(embs.shape[0])


def _added_rows_problems(model: Flamingo, added: Tensor, lm_vocab: int | None, full_table: bool) -> list[str]:
    """What is wrong with an ``added_token_embeddings`` tensor for this model (empty when it fits)."""
    vocab, dim = model.lang.vocab_size, model.lang.hidden_size
    if full_table:
        return [f"{ADDED_ROWS_KEY} next to the whole input embedding table: keep one of them"]
    if lm_vocab is None or added.shape != (vocab - lm_vocab, dim):
        want = "none (the LM has no pretrained vocabulary)" if lm_vocab is None else f"({vocab - lm_vocab}, {dim})"
        return [f"{ADDED_ROWS_KEY} has shape {tuple(added.shape)}, the model expects {want}"]
    return []


def bridge_state_dict(model: Flamingo, lm_vocab: int, dtype: torch.dtype = torch.float16) -> dict[str, Tensor]:
    """The trained part of a frozen-LM Flamingo in OpenFlamingo's key layout, loadable by
    ``load_flamingo_checkpoint``: ``perceiver.*``, each block as ``lang_encoder.<layers>.<i>.gated_cross_attn_layer.*``
    and the rows of the added tokens as ``added_token_embeddings`` (not the whole table)."""
    layers = _layers_path(model)
    out = {k: v for k, v in model.state_dict().items() if k.startswith("perceiver.")}
    for key, value in model.xattn.state_dict().items():
        idx, rest = key.split(".", 1)
        out[f"lang_encoder.{layers}.{idx}.gated_cross_attn_layer.{rest}"] = value
    out[ADDED_ROWS_KEY] = model.lang.input_embeddings().weight[lm_vocab:]
    return {k: v.detach().to(dtype).contiguous().clone() for k, v in out.items()}


def _check(model: Flamingo, ours: Mapping[str, Tensor], assign: Mapping[str, Tensor], unexpected: list[str],
           conflicts: list[str], path: Path, lm_vocab: int | None, new_head_rows: str,
           added: Tensor | None = None) -> None:
    """Collect every problem into one message (missing, unexpected, wrong shape, conflicts, invented rows)."""
    missing = sorted(k for k in ours if k.startswith(BRIDGE_PREFIXES) and k not in assign)
    bad_shape = sorted(f"{k} (checkpoint {tuple(v.shape)}, model {tuple(ours[k].shape)})"
                       for k, v in assign.items() if v.shape != ours[k].shape)
    problems = [f"{label}: {_names(keys)}" for label, keys in (
        ("missing", missing), ("unexpected", sorted(unexpected)), ("wrong shape", bad_shape),
        ("conflicting duplicates", conflicts)) if keys]
    hint = _xattn_hint(model, missing, unexpected)
    vocab = model.lang.vocab_size
    emb = "lang." + _input_embedding_key(model)
    if added is not None:
        problems += _added_rows_problems(model, added, lm_vocab, emb in assign)
    if lm_vocab is not None and lm_vocab < vocab:
        new = f"rows {lm_vocab}..{vocab - 1} (the tokens added for Flamingo: <|endofchunk|>, <image>, <PAD>)"
        if emb not in assign and added is None:
            problems.append(f"the LM vocabulary grew from {lm_vocab} to {vocab} but the checkpoint has no input "
                            f"embeddings ({emb}): {new} would be invented")
        head = _head_key(model)
        if head is not None and head not in assign and new_head_rows == "error":
            problems.append(
                f"the LM has an untied output head ({head}) that grew from {lm_vocab} to {vocab} rows; {new} are "
                "in neither the LM weights nor the checkpoint (OpenFlamingo re-draws them randomly at every load, so "
                "its <|endofchunk|> logits are not reproducible). Pass model.new_head_rows=mean to accept the mean "
                "of the pretrained rows for them")
    if problems:
        raise UserError(f"checkpoint {path} does not match the model: " + "; ".join(problems) + hint)


def _names(keys: list[str]) -> str:
    more = f" ... (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def _xattn_hint(model: Flamingo, missing: list[str], unexpected: list[str]) -> str:
    """Name the cross-attention layout on both sides when the blocks do not line up."""
    theirs = sorted({int(m.group(2)) for k in unexpected for m in [_LAYER_KEY.match(k) or _ALIAS_KEY.match(k)]
                     if m and "gated_cross_attn" in k})
    if not theirs and not any(k.startswith("xattn.") for k in missing):
        return ""
    mine = sorted(int(i) for i in model.xattn)
    n = model.cfg.cross_attn_every_n_layers
    return (f" (the model has cross-attention before layers {mine}, cross_attn_every_n_layers={n}; the checkpoint "
            f"also has layers {theirs}: check flamingo.cross_attn_every_n_layers)" if theirs else
            f" (the model has cross-attention before layers {mine}, cross_attn_every_n_layers={n}: check "
            "flamingo.cross_attn_every_n_layers and that this is an OpenFlamingo checkpoint)")


def resolve_hf_dir(path_or_id: str) -> str:
    """A local HF model directory for ``path_or_id``: the directory itself, or a hub snapshot.

    Hub ids (``owner/name``) are fetched with ``huggingface_hub.snapshot_download`` (config, tokenizer and
    weight files only); with ``HF_HUB_OFFLINE=1`` only an already-cached snapshot is used.

    Raises:
        UserError: neither a directory nor an available hub snapshot.
    """
    local = Path(path_or_id).expanduser()
    if local.is_dir():
        return str(local)
    if path_or_id.count("/") != 1 or path_or_id.startswith((".", "/", "~")) or local.exists() or local.is_symlink():
        read_hf_config(local)  # names what is wrong: missing, a file, a broken link, a symlink loop
    if path_or_id.count("/") != 1:
        raise UserError(f"LM path '{path_or_id}' is not a directory (nor a hub id like owner/name)")
    try:
        from huggingface_hub import snapshot_download

        return str(snapshot_download(path_or_id, allow_patterns=[
            "*.json", "*.safetensors", "*.bin", "*.model", "*.txt", "*.tiktoken"]))
    except Exception as e:  # noqa: BLE001 - offline, missing repo, auth: all mean "not available here"
        raise UserError(f"LM '{path_or_id}' is not a local directory and could not be fetched from the Hugging Face "
                        f"hub ({type(e).__name__}); download it and pass model.lm.path=/local/dir "
                        "(and model.lm.tokenizer=/local/dir)") from None
