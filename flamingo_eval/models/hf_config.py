"""A Hugging Face model directory's ``config.json``, read with one-line errors and without torch (so a model
directory's layout is checked at start-up, before the heavy imports)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flamingo_eval.errors import UserError
from flamingo_eval.models.weight_files import check_file, sniff

__all__ = ["read_hf_config"]


def read_hf_config(root: Path) -> dict[str, Any]:
    """``root/config.json`` as a dict, or one :class:`UserError` naming the directory/file and the fix."""
    fix = "pass model.lm.path=DIR, a Hugging Face model directory (config.json, weights, tokenizer files)"
    if not root.is_dir():
        check_file(root, "LM directory", fix)  # a loop, a broken link or a missing path: say which
        raise UserError(f"LM directory {root} is a file, not a directory; {fix}")
    cfg_path = root / "config.json"
    if not cfg_path.exists():
        raise UserError(f"LM directory {root} has no config.json (expected a Hugging Face model directory); {fix}")
    check_file(cfg_path, "LM config", fix)
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        kind = sniff(cfg_path)
        what = {"lfs": "a git-lfs pointer (run `git lfs pull`)", "html": "an HTML page (download it again)"}.get(
            kind, f"not valid JSON ({str(e).splitlines()[0]})")
        raise UserError(f"LM config {cfg_path} is {what}") from None
    if not isinstance(config, dict):
        raise UserError(f"LM config {cfg_path} holds a JSON {type(config).__name__}, not an object of HF config "
                        "fields (model_type, hidden_size, ...)")
    return config
