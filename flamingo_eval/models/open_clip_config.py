"""A custom open_clip architecture from a model-config JSON file, and open_clip's log noise kept in check.

The file is what ``open_clip.add_model_config`` reads (``{"embed_dim", "vision_cfg", "text_cfg", ...}``, as in
open_clip's ``model_configs/*.json``), or the hub layout's ``open_clip_config.json`` (``{"model_cfg": ...,
"preprocess_cfg": ...}``). Only the image tower is used, so ``text_cfg`` may be left out: the text tower is
always built tiny (it is dropped right after construction; its size changes nothing the encoder returns).

The model is built through open_clip's own ``local-dir:`` loader from a private temporary directory, so
nothing is added to open_clip's global registry of model names (two configs never shadow each other or a
built-in name). Weights are loaded by the caller (``vision.py``), strictly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flamingo_eval.errors import UserError
from flamingo_eval.models.weight_files import check_file, sniff

__all__ = ["OpenClipSpec", "build_from_config", "quiet_random_init", "read_open_clip_config"]

TINY_TEXT_CFG = {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}
"""Text tower built in place of the config's (never used: the encoder keeps the image tower only)."""
_DROPPED = ("text_cfg", "custom_text", "multimodal_cfg", "preprocess_cfg")
_RANDOM_INIT_LOGS = ("No pretrained weights loaded for model", "Local config loaded, but no CLIP weights")
_FIX = "see docs/openflamingo.md, \"Your own checkpoint\""


@dataclasses.dataclass(frozen=True)
class OpenClipSpec:
    """A validated config file: the model config (tiny text tower), preprocessing, and where it came from."""

    path: Path
    model_cfg: dict[str, Any]
    preprocess_cfg: dict[str, Any]

    @property
    def name(self) -> str:
        """A display name: the file's stem, or its directory's name for a generic ``config.json``."""
        stem = self.path.stem
        return self.path.parent.name if stem in ("config", "open_clip_config") else stem


def read_open_clip_config(path: str | Path) -> OpenClipSpec:
    """Read and check an open_clip model-config JSON file.

    Raises:
        UserError: missing/unreadable file, not JSON, or fields open_clip does not know (named).
    """
    path = check_file(Path(path).expanduser(), "open_clip config", f"pass model.vision.options.config=FILE ({_FIX})")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        kind = sniff(path)
        what = {"lfs": "a git-lfs pointer (run `git lfs pull`)", "html": "an HTML page (download it again)",
                "empty": "empty"}.get(kind, f"not valid JSON ({str(e).splitlines()[0]})")
        raise UserError(f"open_clip config {path} is {what}") from None
    if isinstance(obj, dict) and isinstance(obj.get("model_cfg"), dict):
        model_cfg, preprocess = dict(obj["model_cfg"]), dict(obj.get("preprocess_cfg") or {})
    elif isinstance(obj, dict):
        model_cfg, preprocess = dict(obj), {}
    else:
        raise UserError(f"open_clip config {path} holds a JSON {type(obj).__name__}; expected an object with "
                        "embed_dim and vision_cfg (open_clip's model-config format)")
    _check_fields(path, model_cfg)
    model_cfg = {k: v for k, v in model_cfg.items() if k not in _DROPPED}
    return OpenClipSpec(path=path, model_cfg={**model_cfg, "text_cfg": dict(TINY_TEXT_CFG)},
                        preprocess_cfg=preprocess)


def _check_fields(path: Path, cfg: dict[str, Any]) -> None:
    import open_clip

    missing = [k for k in ("embed_dim", "vision_cfg") if k not in cfg]
    if missing:
        raise UserError(f"open_clip config {path} has no {' or '.join(missing)}; an open_clip model config holds "
                        f"embed_dim, vision_cfg and text_cfg (keys found: {sorted(cfg) or 'none'})")
    if not isinstance(cfg["vision_cfg"], dict) or not isinstance(cfg["embed_dim"], int):
        raise UserError(f"open_clip config {path}: vision_cfg must be an object and embed_dim an integer")
    top = set(inspect.signature(open_clip.CLIP.__init__).parameters) - {"self", "cast_dtype"}
    unknown = sorted(set(cfg) - top - set(_DROPPED))
    if unknown:
        raise UserError(f"open_clip config {path}: unknown field(s) {unknown}; known: {sorted(top)}")
    fields = {f.name for f in dataclasses.fields(open_clip.CLIPVisionCfg)}
    unknown = sorted(set(cfg["vision_cfg"]) - fields)
    if unknown:
        raise UserError(f"open_clip config {path}: unknown vision_cfg field(s) {unknown}; known: {sorted(fields)}")


def build_from_config(spec: OpenClipSpec, quick_gelu: bool) -> tuple[Any, Any]:
    """(open_clip model, eval preprocess) with random weights for ``spec`` (the caller seeds and loads weights).

    Raises:
        UserError: open_clip cannot build the architecture (a value of the wrong type or range).
    """
    import open_clip

    with tempfile.TemporaryDirectory(prefix="flamingo-eval-open-clip-") as tmp:
        blob = {"model_cfg": spec.model_cfg, "preprocess_cfg": spec.preprocess_cfg}
        (Path(tmp) / "open_clip_config.json").write_text(json.dumps(blob))
        try:
            with quiet_random_init():
                model, _, preprocess = open_clip.create_model_and_transforms(
                    f"local-dir:{tmp}", force_quick_gelu=quick_gelu)
        except (TypeError, ValueError, KeyError, AssertionError, RuntimeError) as e:
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"open_clip cannot build the model of {spec.path} ({detail}); check its vision_cfg "
                            "values") from None
    return model, preprocess


class _DropRandomInit(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_RANDOM_INIT_LOGS)


@contextlib.contextmanager
def quiet_random_init() -> Iterator[None]:
    """Drop open_clip's "no pretrained weights ... initialized randomly" warnings while building a tower.

    Used when the project loads the tower's weights itself right after construction (or was asked for a
    seeded random tower): the message would say the opposite of what the run does. open_clip logs through
    the root logger, so the filter sits there, only for the duration of the construction.
    """
    root, flt = logging.getLogger(), _DropRandomInit()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)
