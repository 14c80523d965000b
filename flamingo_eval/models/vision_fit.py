"""Do an open_clip tower's weights fit its architecture? Checked from shapes, before torch or open_clip load.

A ViT's weights fix its width (``conv1.weight``: width x 3 x patch x patch), patch size, depth (the number
of ``transformer.resblocks.<i>``) and input size (``positional_embedding``: grid^2 + 1 rows). These are compared
with the architecture that would be built (an open_clip model-config JSON file, or a built-in open_clip name
whose JSON ships in open_clip's ``model_configs/``, read as a file: nothing is imported). On a mismatch the
message names the built-in configs the weights do fit, or asks for the tower's config JSON: one line instead
of the dozens of ``size mismatch`` lines ``load_state_dict`` prints.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path
from typing import Any

from flamingo_eval.errors import UserError
from flamingo_eval.models.checkpoint_shapes import tensor_shapes

__all__ = ["check_tower_fits", "tower_of_config", "tower_of_weights"]

_BLOCK = re.compile(r"^(?:visual\.)?transformer\.resblocks\.(\d+)\.")


def tower_of_weights(shapes: dict[str, tuple[int, ...]]) -> dict[str, int] | None:
    """``{width, patch_size, layers, image_size}`` of a ViT state dict (full CLIP or visual-only); None if
    the shapes are not an open_clip ViT's."""
    pre = "visual." if any(k.startswith("visual.") for k in shapes) else ""
    conv, pos = shapes.get(f"{pre}conv1.weight"), shapes.get(f"{pre}positional_embedding")
    if conv is None or len(conv) != 4 or pos is None or len(pos) != 2:
        return None
    blocks = [int(m.group(1)) for k in shapes if k.startswith(pre) for m in [_BLOCK.match(k[len(pre):])] if m]
    grid = math.isqrt(max(pos[0] - 1, 0))
    return {"width": conv[0], "patch_size": conv[2], "layers": max(blocks) + 1 if blocks else 0,
            "image_size": grid * conv[2]}


def tower_of_config(model_cfg: dict[str, Any]) -> dict[str, int] | None:
    """The same numbers from an open_clip model config (None: not a plain ViT config, e.g. timm towers)."""
    vision = model_cfg.get("model_cfg", model_cfg).get("vision_cfg")
    if not isinstance(vision, dict) or vision.get("timm_model_name"):
        return None
    try:
        size = vision.get("image_size", 224)
        return {"width": int(vision.get("width", 768)), "patch_size": int(vision.get("patch_size", 16)),
                "layers": int(vision["layers"]) if isinstance(vision.get("layers"), int) else -1,
                "image_size": int(size[0] if isinstance(size, (list, tuple)) else size)}
    except (TypeError, ValueError, KeyError):
        return None


def _builtin_dir() -> Path | None:
    spec = importlib.util.find_spec("open_clip")  # locates the package without importing it
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) / "model_configs" if locations else None


def _builtin(name: str) -> dict[str, Any] | None:
    folder = _builtin_dir()
    path = folder / f"{name}.json" if folder else None
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _fitting_builtins(tower: dict[str, int]) -> list[str]:
    folder = _builtin_dir()
    if folder is None or not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            if tower_of_config(json.loads(path.read_text(encoding="utf-8"))) == tower:
                out.append(path.stem)
        except (ValueError, UnicodeDecodeError, AttributeError):
            continue
    return sorted(out, key=lambda n: ("quickgelu" in n, len(n), n))


def _describe(t: dict[str, int]) -> str:
    return f"width {t['width']}, {t['layers']} layers, patch {t['patch_size']}, {t['image_size']} px"


def check_tower_fits(weights: Path, config: str | None, model_name: str | None) -> None:
    """Raise one :class:`UserError` when the ViT in ``weights`` cannot be the tower ``config`` (a JSON file)
    or the built-in ``model_name`` describes; silent when either side cannot be read (the loader decides)."""
    if not weights.is_file():
        return
    have = tower_of_weights(tensor_shapes(weights))
    if have is None:
        return
    if config:
        try:
            arch = json.loads(Path(config).expanduser().read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return  # read_open_clip_config names the problem
        label, want = f"the open_clip config {config}", tower_of_config(arch) if isinstance(arch, dict) else None
    else:
        arch_b = _builtin(model_name or "ViT-L-14")
        label, want = f"open_clip's {model_name or 'ViT-L-14'}", tower_of_config(arch_b) if arch_b else None
    if want is None or want == have:
        return
    fits = _fitting_builtins(have)
    fix = (f"they fit open_clip's {', '.join(fits[:3])}: pass model.vision.options.model_name={fits[0]}"
           + (" (and drop model.vision.options.config)" if config else "")) if fits else (
        "pass the open_clip config JSON they were trained with as model.vision.options.config=FILE (or put it "
        "next to the weights in the model directory)")
    raise UserError(f"vision weights {weights} ({_describe(have)}) do not fit {label} ({_describe(want)}); {fix}")
