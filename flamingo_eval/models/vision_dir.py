"""Where a model directory keeps its open_clip vision tower (config JSON + weights), found without torch.

Search order (the first place holding an open_clip config or tower weights wins):

1. ``DIR/vision/``: any ``config.json`` / ``open_clip_config.json`` and its one weights file (the layout
   ``model_dir.py`` documents);
2. ``DIR`` itself, as OpenFlamingo's evaluation flags take a model (``--checkpoint_path``, ``--lm_path`` and the
   vision tower as a weights file plus its open_clip config JSON side by side): a ``*.json`` holding
   ``vision_cfg`` (open_clip's model-config format, or the hub's ``open_clip_config.json``) and a weights file
   whose tensor names are a ViT's (``conv1.weight``), the bridge checkpoint excluded;
3. any other sub-directory (``lm/`` excepted, sorted by name) that holds such a JSON (the hub layout of an
   open_clip model: ``open_clip_config.json`` + ``open_clip_pytorch_model.bin``).

With several configs in one place, the one whose ViT sizes fit the weights is taken (``vision_fit.py``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from flamingo_eval.models.weight_files import pickled_strings

__all__ = ["TowerFiles", "find_tower", "is_open_clip_config", "is_tower_weights"]

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
_VISION_CONFIGS = ("config.json", "open_clip_config.json")


class TowerFiles:
    """Where the tower was found, its candidate config files and weights files."""

    def __init__(self, place: Path, configs: list[Path], weights: list[Path]) -> None:
        self.place, self.configs, self.weights = place, configs, weights


def is_open_clip_config(path: Path) -> bool:
    """A JSON object with ``vision_cfg`` (top level or under ``model_cfg``)."""
    try:
        if path.stat().st_size > 1 << 20:
            return False
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    if isinstance(obj, dict) and isinstance(obj.get("model_cfg"), dict):
        obj = obj["model_cfg"]
    return isinstance(obj, dict) and "vision_cfg" in obj


def is_tower_weights(path: Path) -> bool:
    """Tensor names of an open_clip ViT (``conv1.weight``) and none of a Flamingo bridge (``perceiver.``)."""
    names = pickled_strings(path)
    return any(n.endswith("conv1.weight") for n in names) and not any("perceiver." in n for n in names)


def _weights(place: Path, checkpoint: Path | None, classify: bool) -> list[Path]:
    files = [p for p in sorted(place.iterdir()) if p.suffix in WEIGHT_SUFFIXES and p.is_file()]
    files = [p for p in files if checkpoint is None or os.path.realpath(p) != os.path.realpath(checkpoint)]
    return [p for p in files if is_tower_weights(p)] if classify else files


def find_tower(root: Path, checkpoint: Path | None) -> TowerFiles | None:
    """The first place of the search order (module docstring) holding a tower's config or weights."""
    vision = root / "vision"
    if vision.is_dir():
        configs = [vision / n for n in _VISION_CONFIGS if (vision / n).is_file()]
        weights = _weights(vision, checkpoint, classify=False)
        if configs or weights:
            return TowerFiles(vision, configs, weights)
    configs = [p for p in sorted(root.glob("*.json")) if p.name != "flamingo.json" and is_open_clip_config(p)]
    weights = _weights(root, checkpoint, classify=True)
    if configs or weights:
        return TowerFiles(root, configs, weights)
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in ("lm", "vision")
                      and not p.name.startswith(".")):
        configs = [p for p in sorted(sub.glob("*.json")) if is_open_clip_config(p)]
        if configs:
            return TowerFiles(sub, configs, _weights(sub, checkpoint, classify=False))
    return None
