"""An OpenFlamingo-format model directory (``model.path=DIR``) -> a complete model config, before any model loads.

Layout (docs/openflamingo.md, "Your own checkpoint")::

    DIR/checkpoint.pt          the trained bridge: a flat state dict, a training checkpoint
                               ({"model_state_dict": {"module.<key>": ...}}) or checkpoint.safetensors
    DIR/lm/                    the language model as a Hugging Face directory (config.json, weights, tokenizer)
    DIR/vision/config.json     optional: an open_clip model config (the add_model_config format)
    DIR/vision/<weights>       optional: the tower's weights (one .safetensors/.pt/.pth/.bin file); or config
                               and weights side by side at the top or in a sub-directory (search order:
                               ``vision_dir.py``), as OpenFlamingo's evaluation flags take them
    DIR/flamingo.json          optional: bridge sizes the checkpoint's shapes cannot say ({"perceiver_heads": 2})

Precedence, per field: a ``model.*`` override given on the command line > the directory's file > the value of
the ``--model`` config > the built-in default (open_clip ViT-L-14 ``openai``; OpenFlamingo's bridge sizes).
``model.name`` defaults to the directory's name, so records and leaderboards name the model, not the config
it borrowed. ``cross_attn_every_n_layers`` is read from the checkpoint's cross-attention keys, and every other
bridge size its tensor shapes fix from those (``checkpoint_shapes.py``); a given value they contradict is one
error. Local tower weights are checked against the architecture from their shapes (``vision_fit.py``); a local
tokenizer directory must hold tokenizer files.

This module imports neither torch nor open_clip (tensor names are read with ``weight_files.pickled_strings``),
so a bad directory is reported at once. Other model families can reuse :func:`find_weights` and the layout.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flamingo_eval.config import ModelCfg
from flamingo_eval.errors import UserError
from flamingo_eval.models.architecture import Given
from flamingo_eval.models.assets import PACKAGED_LMS
from flamingo_eval.models.checkpoint_shapes import bridge_settings, implied_bridge, tensor_shapes
from flamingo_eval.models.hf_config import read_hf_config
from flamingo_eval.models.tokenizer_check import check_tokenizer_dir, tokenizer_files_problem
from flamingo_eval.models.vision_dir import TowerFiles, find_tower, is_tower_weights
from flamingo_eval.models.weight_files import check_file, check_weights_file, pickled_strings

__all__ = ["CHECKPOINT_NAMES", "checkpoint_fixes", "cross_attn_layers", "find_weights", "resolve_openflamingo"]

CHECKPOINT_NAMES = ("checkpoint.pt", "checkpoint.safetensors", "checkpoint.pth", "checkpoint.bin")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
LM_DIR, VISION_DIR, BRIDGE_FILE = "lm", "vision", "flamingo.json"
_XATTN = re.compile(r"(?:^|\.)lang_encoder\.(?:.+\.)?(\d+)\.gated_cross_attn_layer\.|"
                    r"(?:^|\.)lang_encoder\.gated_cross_attn_layers\.(\d+)\.")
_DOCS = "see docs/openflamingo.md, \"Your own checkpoint\""


def resolve_openflamingo(cfg: ModelCfg, given: Given) -> None:
    """Complete ``cfg`` in place from ``cfg.path`` and its checkpoint (the ``openflamingo`` architecture's
    ``resolve``; :func:`~flamingo_eval.models.architectures.resolve_model` calls it on a copy); idempotent.

    Args:
        cfg: The composed model config (changed in place).
        given: Which fields the user gave (the directory never replaces them).

    Raises:
        UserError: a missing/ambiguous part of the directory, or cross-attention keys that contradict a given
            ``cross_attn_every_n_layers``.
    """
    sizes: dict[str, int] = {}
    if cfg.path:
        sizes = _from_directory(cfg, Path(cfg.path).expanduser(), given)
    cfg.flamingo = {k: v for k, v in cfg.flamingo.items() if v is not None}  # null = "not given"
    if cfg.vision.name == "open_clip":
        _check_tower(cfg, given)
    if cfg.lm.tokenizer is not None and cfg.lm.tokenizer not in PACKAGED_LMS:
        check_tokenizer_dir(cfg.lm.tokenizer)
    if cfg.checkpoint:
        _cross_attn(cfg, checkpoint_path(cfg.checkpoint))
        _bridge_shapes(cfg, checkpoint_path(cfg.checkpoint), lambda k: "given on the command line" if given.cli(
            f"model.flamingo.{k}") else "from flamingo.json" if k in sizes else "from the --model config")


def _from_directory(cfg: ModelCfg, root: Path, given: Given) -> dict[str, int]:
    if not root.is_dir():
        check_file(root, "model.path", f"pass the model directory ({_DOCS})")
        raise UserError(f"model.path {root} is a file, not a directory: pass the directory holding checkpoint.pt "
                        f"and lm/, or the file as model.checkpoint={root}")
    if not given("model.name", cfg.name):
        cfg.name = root.resolve().name
    if not given("model.checkpoint", cfg.checkpoint):
        cfg.checkpoint = str(find_weights(root, CHECKPOINT_NAMES, "checkpoint", "model.checkpoint=FILE",
                                          skip=is_tower_weights))
    if cfg.lm.source == "hf" and not given("model.lm.path", cfg.lm.path):
        lm = root / LM_DIR
        if not lm.is_dir():
            raise UserError(f"model.path {root} has no {LM_DIR}/ directory (the language model as a Hugging Face "
                            f"directory: config.json, weights, tokenizer); put it there or pass "
                            f"model.lm.path=DIR_OR_HUB_ID ({_DOCS})")
        cfg.lm.path = str(lm)
        read_hf_config(lm)  # no or a bad config.json: named now, not after the heavy imports
        if not given("model.lm.tokenizer", cfg.lm.tokenizer):
            cfg.lm.tokenizer = None  # the tokenizer follows the LM (OpenFlamingo's tokenizer_path)
            if tokenizer_files_problem(lm):
                raise UserError(f"model.path {root}: {LM_DIR}/ has no tokenizer files (tokenizer.json, "
                                f"tokenizer.model or vocab.json + merges.txt); copy the LM's tokenizer there or pass "
                                "model.lm.tokenizer=DIR")
    ckpt = checkpoint_path(cfg.checkpoint) if cfg.checkpoint else None
    tower = find_tower(root, ckpt) if cfg.vision.name == "open_clip" else None
    if tower is not None:
        _vision(cfg, tower, given)
    bridge = root / BRIDGE_FILE
    sizes: dict[str, int] = {}
    if bridge.exists():
        sizes = _read_bridge(bridge)
        cfg.flamingo.update({k: v for k, v in sizes.items() if not given(f"model.flamingo.{k}", cfg.flamingo.get(k))})
    key = "cross_attn_every_n_layers"
    if not given(f"model.flamingo.{key}", cfg.flamingo.get(key)) and key not in sizes:
        cfg.flamingo.pop(key, None)  # the directory's checkpoint decides (read in _cross_attn)
    return sizes


def _vision(cfg: ModelCfg, tower: TowerFiles, given: Given) -> None:
    opts, vision, weights = cfg.vision.options, tower.place, tower.weights
    configs = _fitting(tower)
    if len(configs) > 1 and not given("model.vision.options.config", opts.get("config")):
        raise UserError(f"{vision} holds several open_clip configs ({', '.join(p.name for p in configs)}); keep "
                        "one or pass model.vision.options.config=FILE")
    if configs and not given("model.vision.options.config", opts.get("config")) \
            and not given.cli("model.vision.options.model_name"):
        opts["config"] = str(configs[0])
        opts.pop("model_name", None)  # the file names the architecture
    if not given("model.vision.options.pretrained", opts.get("pretrained")):
        if len(weights) > 1:
            raise UserError(f"{vision} holds several weight files ({', '.join(p.name for p in weights)}); keep one "
                            "or pass model.vision.options.pretrained=FILE")
        if weights:
            opts["pretrained"] = str(weights[0])
        elif configs:
            raise UserError(f"{vision} has {configs[0].name} but no weights file (.safetensors, .pt, .pth or .bin) "
                            "for that tower; add it or pass model.vision.options.pretrained=FILE")


def _check_tower(cfg: ModelCfg, given: Given) -> None:
    """A config file names the architecture (no stale ``model_name`` beside it); local weights must fit it."""
    opts = cfg.vision.options
    if opts.get("config") and not given.cli("model.vision.options.model_name"):
        opts.pop("model_name", None)  # the record would otherwise name a tower that is not the one built
    pretrained = opts.get("pretrained")
    if isinstance(pretrained, str) and Path(pretrained).expanduser().is_file():
        from flamingo_eval.models.vision_fit import check_tower_fits

        check_tower_fits(Path(pretrained).expanduser(), opts.get("config"), opts.get("model_name"))


def _read_bridge(path: Path) -> dict[str, int]:
    check_file(path, "bridge config", f"remove it or fix it ({_DOCS})")
    try:
        sizes = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"bridge config {path} is not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(sizes, dict) or not all(isinstance(v, int) and v > 0 for v in sizes.values()):
        raise UserError(f"bridge config {path} must be a JSON object of positive integers, e.g. "
                        '{"perceiver_depth": 6, "num_latents": 64} (the model.flamingo.* fields)')
    return sizes


def _fitting(tower: TowerFiles) -> list[Path]:
    """The tower's config files; of several, those whose ViT sizes fit its one weights file."""
    if len(tower.configs) < 2 or len(tower.weights) != 1:
        return tower.configs
    from flamingo_eval.models.vision_fit import tower_of_config, tower_of_weights

    have = tower_of_weights(tensor_shapes(tower.weights[0]))
    fit = [p for p in tower.configs if have is not None and tower_of_config(json.loads(p.read_text())) == have]
    return fit or tower.configs


def find_weights(root: Path, names: tuple[str, ...], what: str, override: str,
                 skip: Callable[[Path], bool] | None = None) -> Path:
    """The one weights file of ``root``: the first of ``names`` present, else its only ``*.pt``-like file
    (files ``skip`` says are something else, e.g. a vision tower, are not candidates).

    Raises:
        UserError: none, or several candidates (named), with the override that picks one.
    """
    for name in names:
        if (root / name).exists():
            return root / name
    found = [p for p in sorted(root.iterdir()) if p.suffix in WEIGHT_SUFFIXES]
    if skip is not None and len(found) > 1:
        found = [p for p in found if not skip(p)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise UserError(f"model.path {root} has no {what} file ({' or '.join(names[:2])}); put it there or pass "
                        f"{override}")
    raise UserError(f"model.path {root} holds several {what} candidates ({', '.join(p.name for p in found)}); "
                    f"name it {names[0]} or pass {override}")


def cross_attn_layers(names: Iterable[str]) -> list[int]:
    """Decoder-layer indices that have a gated cross-attention block, from OpenFlamingo tensor names."""
    found = {int(m.group(1) or m.group(2)) for n in names for m in [_XATTN.search(n)] if m}
    return sorted(found)


PACKAGE_SCHEME = "package:"
"""``model.checkpoint=package:<path>`` names a file shipped inside the package (the trained ``mini`` bridge)."""


def checkpoint_path(spec: str) -> Path:
    """``model.checkpoint`` as a path: ``package:<rel>`` is a file shipped inside the package, else a path."""
    if spec.startswith(PACKAGE_SCHEME):
        return Path(__file__).resolve().parents[1] / spec[len(PACKAGE_SCHEME):]  # flamingo_eval/
    return Path(spec).expanduser()



def checkpoint_fixes(path: Path) -> tuple[str, str]:
    """(fix, fix when it is a directory) for messages about a checkpoint file."""
    return ("pass model.checkpoint=/path/to/checkpoint.pt", f"pass the file inside it (model.checkpoint={path}/"
            f"checkpoint.pt) or the whole model directory as model.path={path}")


def _bridge_shapes(cfg: ModelCfg, checkpoint: Path, origin: Any) -> None:
    """Fill the bridge sizes the checkpoint's tensor shapes fix; a given value they contradict is one error."""
    if not checkpoint.exists():
        return
    shapes = tensor_shapes(checkpoint) or {n: () for n in pickled_strings(checkpoint)}  # legacy format: names only
    implied = implied_bridge(shapes)
    cfg.flamingo.update(bridge_settings(implied, cfg.flamingo, str(checkpoint), origin))


def _cross_attn(cfg: ModelCfg, checkpoint: Path) -> None:
    """Infer ``cross_attn_every_n_layers`` from the checkpoint, or check a given value against it."""
    if not checkpoint.exists() and not checkpoint.is_symlink():
        return  # composing a config needs no file; build_model names a missing one before loading anything
    check_weights_file(checkpoint, "checkpoint", *checkpoint_fixes(checkpoint))  # a bad file: named now
    layers = cross_attn_layers(pickled_strings(checkpoint))
    given = cfg.flamingo.get("cross_attn_every_n_layers")
    if not layers:
        if given is None:
            raise UserError(f"checkpoint {checkpoint} has no gated cross-attention tensors "
                            "(lang_encoder.<layers>.<i>.gated_cross_attn_layer.*), so cross_attn_every_n_layers "
                            "cannot be read from it; is it an OpenFlamingo checkpoint? (or set "
                            "model.flamingo.cross_attn_every_n_layers=N)")
        return  # the loader names every missing key
    listed = cfg.flamingo.get("cross_attn_layers")
    if listed is not None:  # an explicit layout (the mini bridge: top layers only) must be the checkpoint's
        if sorted(set(int(i) for i in listed)) != layers:
            raise UserError(f"model.flamingo.cross_attn_layers={list(listed)}, but checkpoint {checkpoint} has "
                            f"cross-attention before decoder layers {layers}; set it to {layers}")
        return
    n = layers[0] + 1  # OpenFlamingo puts a block before layer i when (i + 1) % n == 0
    if layers != list(range(n - 1, layers[-1] + 1, n)):
        raise UserError(f"checkpoint {checkpoint} has cross-attention before decoder layers {layers}, which no "
                        "cross_attn_every_n_layers gives (OpenFlamingo spaces them evenly)")
    if given is not None and given != n:
        raise UserError(f"model.flamingo.cross_attn_every_n_layers={given}, but checkpoint {checkpoint} has "
                        f"cross-attention before decoder layers {layers}, i.e. every {n}; drop the setting (it "
                        f"is read from the checkpoint) or set it to {n}")
    cfg.flamingo["cross_attn_every_n_layers"] = n
