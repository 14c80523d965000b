"""An IDEFICS directory's ``preprocessor_config.json`` (``IdeficsImageProcessor``), read without torch.

IDEFICS normalises pixels with ``image_mean`` / ``image_std`` after a bicubic resize to ``image_size``; the
released models use OpenAI CLIP's statistics, but a fine-tune may not. The values are read here at start-up,
recorded in the run's config (``model.vision.options``) and applied by the vision tower's ``preprocess``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flamingo_eval.errors import UserError

__all__ = ["PROCESSOR_KEYS", "read_preprocessor"]

PROCESSOR_KEYS = ("image_mean", "image_std", "image_size")


def read_preprocessor(root: Path) -> dict[str, Any]:
    """``{image_mean, image_std, image_size}`` of ``root/preprocessor_config.json`` (``{}`` without the file).

    Raises:
        UserError: unreadable JSON, values of the wrong shape, a pixel pipeline the tower does not implement
            (``do_normalize: false``, a rescale factor other than 1/255), or an ``image_size`` that is not the
            vision tower's (``config.json``'s ``vision_config.image_size``).
    """
    path = root / "preprocessor_config.json"
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({str(e).splitlines()[0]}); fix or remove it") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path} must be a JSON object (an IdeficsImageProcessor config)")
    out: dict[str, Any] = {}
    for key in ("image_mean", "image_std"):
        value = raw.get(key)
        if value is None:
            continue
        if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value)) \
                or (key == "image_std" and any(v <= 0 for v in value)):
            raise UserError(f"{path}: {key} must be 3 numbers (per RGB channel){', all > 0' * (key == 'image_std')}"
                            f", got {value!r}")
        out[key] = [float(v) for v in value]
    if raw.get("do_normalize") is False or abs(float(raw.get("rescale_factor", 1 / 255)) - 1 / 255) > 1e-12:
        raise UserError(f"{path}: do_normalize false or a rescale_factor other than 1/255 is not supported (the "
                        "tower computes (x - 255 mean) / (255 std) on 0..255 pixels)")
    size = raw.get("image_size")
    if size is None and isinstance(raw.get("size"), dict):
        size = raw["size"].get("height")
    if size is not None:
        out["image_size"] = int(size)
        _check_size(root, int(size), path)
    return out


def _check_size(root: Path, size: int, path: Path) -> None:
    try:
        vision = json.loads((root / "config.json").read_text(encoding="utf-8")).get("vision_config") or {}
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        return  # the loader names a bad config.json
    tower = vision.get("image_size") if isinstance(vision, dict) else None
    if isinstance(tower, int) and tower != size:
        raise UserError(f"{path}: image_size {size}, but config.json's vision_config.image_size is {tower} (the "
                        "tower's learned positions); make them equal")
