"""IDEFICS Hugging Face checkpoints (``IdeficsForVisionText2Text`` layout) -> our ``Idefics``, strictly.

A released model directory holds ``config.json``, the tokenizer files and the weights as sharded safetensors
(``model.safetensors.index.json`` + ``model-0000k-of-0000n.safetensors``), a single ``model.safetensors``, or
``pytorch_model.bin`` (sharded or not). Checkpoint key -> our key:

* ``model.vision_model.*`` -> ``vision_encoder.*``; ``model.perceiver_resampler.*`` -> ``perceiver.*``;
* ``model.gated_cross_attn_layers.<j>.*`` -> ``xattn.<j * cross_layer_interval>.*`` (it sits before that layer);
* ``model.embed_tokens.* / model.layers.* / model.norm.*`` -> ``lang.model.*``; ``lm_head.*`` -> ``lang.lm_head.*``;
* ignored (never trained, recomputed): rotary ``inv_freq`` and the vision ``position_ids`` buffers older
  transformers versions saved.

Accounting: every tensor of our model comes from the checkpoint, every checkpoint tensor is used, shapes match;
a tied head's duplicate must equal its primary. Anything else is ONE ``UserError`` naming every such key.
Weights are read shard by shard straight into the requested dtype/device (peak host memory ~ one shard).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from flamingo_eval.errors import UserError
from flamingo_eval.models.idefics.model import Idefics, IdeficsConfig

__all__ = ["IdeficsLoadReport", "load_idefics", "load_idefics_tokenizer", "map_idefics_key", "resolve_idefics_dir"]

IGNORED = re.compile(r"(rotary_emb\.inv_freq|rotary_emb\.original_inv_freq|embeddings\.position_ids)$")
_XATTN = re.compile(r"^model\.gated_cross_attn_layers\.(\d+)\.(.+)$")
SPECIAL_TOKENS = ("<image>", "<fake_token_around_image>")


@dataclass
class IdeficsLoadReport:
    """What a load consumed (for logs and tests)."""

    path: str
    loaded: int = 0
    aliases: int = 0
    ignored: list[str] = field(default_factory=list)


def resolve_idefics_dir(path_or_id: str, model_name: str) -> Path:
    """The local directory of ``path_or_id``: itself, or an already-downloaded hub snapshot (never fetched).

    Raises:
        UserError: one line saying what to download and which flag points at it.
    """
    local = Path(path_or_id).expanduser()
    if local.is_dir():
        return local
    if path_or_id.count("/") == 1 and not path_or_id.startswith((".", "/", "~")):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(path_or_id, local_files_only=True))
        except Exception:  # noqa: BLE001, S110 - not in the cache (any reason): say what to do below
            pass
    raise UserError(f"model {model_name}: weights '{path_or_id}' are neither a local directory nor in the Hugging "
                    f"Face cache (nothing is downloaded at run time); download them, e.g. `huggingface-cli download "
                    f"{path_or_id} --local-dir DIR`, and pass model.lm.path=DIR")


def read_config(root: Path) -> tuple[IdeficsConfig, dict[str, Any]]:
    path = root / "config.json"
    if not path.is_file():
        raise UserError(f"{root}: no config.json (expected an IDEFICS Hugging Face model directory)")
    raw = json.loads(path.read_text())
    if raw.get("model_type") != "idefics":
        raise UserError(f"{path}: model_type is {raw.get('model_type')!r}, not 'idefics'; this loader reads "
                        "IdeficsForVisionText2Text checkpoints (HuggingFaceM4/idefics-*)")
    return IdeficsConfig.from_hf(raw, str(path)), raw


def load_idefics_tokenizer(path: str | Path) -> Any:
    """The model's own tokenizer, unchanged (IDEFICS's added tokens are part of its vocabulary); left padding."""
    from transformers import AutoTokenizer

    from flamingo_eval.models.tokenizer_check import check_round_trip, tokenizer_files_problem

    problem = tokenizer_files_problem(Path(path))
    if problem:
        raise UserError(f"cannot load the IDEFICS tokenizer: {problem}; pass the model's directory (or its "
                        "tokenizer's) as model.lm.tokenizer=DIR")
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load the IDEFICS tokenizer from '{path}': {str(e).splitlines()[0]}") from None
    check_round_trip(tok, path, "pass the IDEFICS model's own tokenizer as model.lm.tokenizer=DIR")
    vocab = tok.get_vocab()
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise UserError(f"tokenizer '{path}' lacks {', '.join(missing)}: not an IDEFICS tokenizer")
    if tok.pad_token is None:  # IDEFICS pads with <unk> (config pad_token_id 0)
        tok.pad_token = tok.unk_token
    tok.padding_side = "left"
    return tok


def map_idefics_key(key: str, interval: int) -> str | None:
    """Our parameter name for a checkpoint key; None when it belongs to no part of IDEFICS."""
    m = _XATTN.match(key)
    if m:
        return f"xattn.{int(m.group(1)) * interval}.{m.group(2)}"
    for theirs, ours in (("model.vision_model.", "vision_encoder."), ("model.perceiver_resampler.", "perceiver."),
                         ("model.embed_tokens.", "lang.model.embed_tokens."), ("model.layers.", "lang.model.layers."),
                         ("model.norm.", "lang.model.norm."), ("lm_head.", "lang.lm_head.")):
        if key.startswith(theirs):
            return ours + key[len(theirs):]
    return None


def _shards(root: Path) -> list[Path]:
    for index, single in (("model.safetensors.index.json", "model.safetensors"),
                          ("pytorch_model.bin.index.json", "pytorch_model.bin")):
        if (root / index).is_file():
            files = sorted(set(json.loads((root / index).read_text())["weight_map"].values()))
            missing = [f for f in files if not (root / f).is_file()]
            if missing:
                raise UserError(f"{root}: weight shards listed in {index} are missing: {', '.join(missing)}")
            return [root / f for f in files]
        if (root / single).is_file():
            return [root / single]
    raise UserError(f"{root}: no model.safetensors(.index.json) or pytorch_model.bin(.index.json) found")


def _shapes(shard: Path) -> dict[str, tuple[int, ...]]:
    """Key -> shape of one shard without reading its data (safetensors) or by reading it (.bin)."""
    if shard.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(shard), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 - safe_open API
    return {k: tuple(v.shape) for k, v in _read_bin(shard).items()}


def _read_bin(shard: Path) -> dict[str, Tensor]:
    state = torch.load(shard, map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(state, dict):
        raise UserError(f"{shard}: expected a state dict of tensors, got {type(state).__name__}")
    return state


def _tensors(shard: Path) -> Iterator[tuple[str, Tensor]]:
    if shard.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(shard), framework="pt") as f:
            for k in f.keys():  # noqa: SIM118 - safe_open API
                yield k, f.get_tensor(k)
    else:
        yield from _read_bin(shard).items()


def _account(model: Idefics, shapes: dict[str, tuple[int, ...]], interval: int, source: str,
             report: IdeficsLoadReport) -> dict[str, str]:
    """checkpoint key -> our (primary) key for every key to load; raises one UserError naming every problem."""
    named = model.state_dict(keep_vars=True)
    primary: dict[int, str] = {}
    for name, t in named.items():
        primary.setdefault(id(t), name)
    plan: dict[str, str] = {}
    unexpected, bad_shape = [], []
    for key, shape in sorted(shapes.items()):
        if IGNORED.search(key):
            report.ignored.append(key)
            continue
        ours = map_idefics_key(key, interval)
        if ours is None or ours not in named:
            unexpected.append(key)
            continue
        if tuple(named[ours].shape) != shape:
            bad_shape.append(f"{key} (checkpoint {shape}, model {tuple(named[ours].shape)})")
            continue
        plan[key] = primary[id(named[ours])]  # a tied head's name resolves to the embeddings it shares
    covered = set(plan.values())
    missing = sorted(n for n in set(primary.values()) if n not in covered)
    problems = [f"{label} ({len(keys)}): {', '.join(keys)}" for label, keys in (
        ("missing", [_checkpoint_name(k, interval) for k in missing]), ("unexpected", unexpected),
        ("wrong shape", bad_shape)) if keys]
    if problems:
        raise UserError(f"{source}: the IDEFICS checkpoint does not match its config.json: " + "; ".join(problems))
    return plan


def _checkpoint_name(ours: str, interval: int) -> str:
    """The checkpoint key a missing parameter of ours would have (errors name checkpoint keys)."""
    m = re.match(r"^xattn\.(\d+)\.(.+)$", ours)
    if m:
        return f"model.gated_cross_attn_layers.{int(m.group(1)) // interval}.{m.group(2)}"
    for mine, theirs in (("vision_encoder.", "model.vision_model."), ("perceiver.", "model.perceiver_resampler."),
                         ("lang.model.", "model."), ("lang.lm_head.", "lm_head.")):
        if ours.startswith(mine):
            return theirs + ours[len(mine):]
    return ours


def load_idefics(root: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 tokenizer: Any = None) -> tuple[Idefics, IdeficsLoadReport]:
    """Build ``Idefics`` from an HF directory, weights assigned by name with strict accounting.

    ``tokenizer`` (default: the directory's own) gives the ``<image>`` / ``<fake_token_around_image>`` ids.
    """
    root = Path(root)
    cfg, _ = read_config(root)
    tok = tokenizer if tokenizer is not None else load_idefics_tokenizer(root)
    media_id, fake_id = (int(tok.convert_tokens_to_ids(t)) for t in SPECIAL_TOKENS)
    total = cfg.vocab_size + cfg.additional_vocab_size
    if max(media_id, fake_id) >= total:
        raise UserError(f"{root}: tokenizer ids of <image>/<fake_token_around_image> ({media_id}, {fake_id}) exceed "
                        f"the model vocabulary ({total}); the tokenizer does not belong to this checkpoint")
    with torch.device("meta"):
        model = Idefics(cfg, media_token_id=media_id, fake_token_id=fake_id)
    report = IdeficsLoadReport(path=str(root))
    shards = _shards(root)
    shapes: dict[str, tuple[int, ...]] = {}
    for shard in shards:
        part = _shapes(shard)
        twice = sorted(set(part) & set(shapes))
        if twice:
            raise UserError(f"{root}: keys stored in more than one shard ({shard.name} and another): "
                            f"{', '.join(twice)}")
        shapes.update(part)
    plan = _account(model, shapes, cfg.cross_layer_interval, str(root), report)
    loaded: dict[str, Tensor] = {}
    for shard in shards:
        tensors: dict[str, Tensor] = {}
        for key, value in _tensors(shard):
            ours = plan.get(key)
            if ours is None:
                continue
            value = value.to(device=device, dtype=dtype)
            if ours in loaded:  # an alias (tied head) must equal what its primary received
                if not torch.equal(loaded[ours], value):
                    raise UserError(f"{root}: {key} differs from the tensor it is tied to")
                report.aliases += 1
                continue
            tensors[ours] = loaded[ours] = value
        model.load_state_dict(tensors, strict=False, assign=True)
    model.lang.tie_head()  # assign=True replaced the tied parameters one name at a time
    report.loaded = len(set(plan.values()))
    return model.eval(), report
