"""Loading a config: compose it with Hydra's compose API from the schema (:mod:`flamingo_eval.config`) and
the YAML groups, and validate it once at start-up.

A typo or a wrong type anywhere, a value that would run but give a wrong or empty result, an unknown name
(adapter, metric, request kind, sampler) or a card argument its adapter or metric does not take becomes one
``UserError`` line naming the key. Light: no torch import (Hydra is imported when a config is composed).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

import flamingo_eval.request_kinds  # noqa: F401  (registers the request kinds; imports no torch)
from flamingo_eval.benchmarks.video import frame_sampling
from flamingo_eval.card_args import check_card
from flamingo_eval.config import DEVICE, ENGINES, ON_BAD_SAMPLE, PACKAGE_DIR, PRECISIONS, SUBSETS, Config
from flamingo_eval.errors import UserError
from flamingo_eval.models.architectures import resolve_model
from flamingo_eval.override_errors import explain_override_error
from flamingo_eval.registry import REQUEST_KINDS

__all__ = ["MINIMUMS", "PATH_FIELDS", "available", "cards_root", "compose_config", "quote_home", "validate"]


def cards_root() -> Path:
    """Directory holding ``benchmarks/`` and ``prompts/``: the checkout, else the copy in the wheel."""
    checkout = PACKAGE_DIR.parent
    if (checkout / "benchmarks").is_dir() and (checkout / "prompts").is_dir():
        return checkout
    return PACKAGE_DIR / "_cards"



def available(group: str) -> list[str]:
    """The config names of ``group`` (``benchmarks``, ``prompts`` or ``model``), sorted."""
    base = PACKAGE_DIR / "conf" if group == "model" else cards_root()
    return sorted(p.stem for p in (base / group).glob("*.yaml"))


def compose_config(benchmark: str, model: str = "mini", overrides: list[str] | None = None) -> Config:
    """Compose and validate; raises UserError (one line) on unknown names, bad overrides or types."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    for group, name in (("benchmarks", benchmark), ("model", model)):
        if name not in available(group):
            kind = "benchmark" if group == "benchmarks" else "model"
            raise UserError(f"unknown {kind} '{name}'; available: {', '.join(available(group))}")
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="flamingo_eval_schema", node=Config)
    ovr = [f"hydra.searchpath=[file://{cards_root()}]", f"benchmarks={benchmark}", f"model={model}",
           *(quote_home(o) for o in overrides or [])]
    try:
        with initialize_config_dir(config_dir=str(PACKAGE_DIR / "conf"), version_base=None):
            raw = compose("config", overrides=ovr)
        cfg = validate(OmegaConf.to_container(raw, resolve=True))  # type: ignore[arg-type]
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(explain_override_error(e, list(overrides or []))) from None
    # model.path=DIR fills the model section; the command line's model.* keys stay as given.
    cfg.model = resolve_model(cfg.model, explicit=[o.split("=", 1)[0] for o in overrides or []])
    return cfg


def validate(data: dict[str, Any]) -> Config:
    """Merge plain data onto the schema (unknown keys and wrong types fail) and check values."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Config), data)
        cfg: Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as e:
        raise UserError(explain_override_error(e, [])) from None
    _check_values(cfg)
    cfg.benchmarks.files = {k: v for k, v in cfg.benchmarks.files.items() if v is not None}  # KEY=null: removed
    _expand_home(cfg)
    check_card(cfg)
    return cfg


PATH_FIELDS = ("run.data_root", "run.output", "run.rices_cache_dir", "model.checkpoint", "model.latent_cache_dir",
               "model.lm.path", "model.lm.tokenizer")
"""Fields holding a file system path; a leading ``~`` in them (and in the string values of
``benchmarks.files``, ``benchmarks.adapter_args`` and ``model.vision.options``) is expanded at start-up."""


def quote_home(override: str) -> str:
    """``key=~/ckpt/x.pt`` -> ``key='~/ckpt/x.pt'``.

    Hydra's override grammar rejects ``~`` in an unquoted value (``LexerNoViableAltException``); the
    quoted form is the same string. Values already quoted, lists/dicts, and values holding a quote or
    ending in a backslash are left to Hydra as given.
    """
    key, sep, value = override.partition("=")
    if not sep or "~" not in value or value[:1] in ("'", '"', "[", "{") or "'" in value or value.endswith("\\"):
        return override
    return f"{key}='{value}'"


def _expand_home(cfg: Config) -> None:
    def expand(value: Any) -> Any:
        return os.path.expanduser(value) if isinstance(value, str) and value.startswith("~") else value

    for key in PATH_FIELDS:
        *parents, name = key.split(".")
        owner = _get(cfg, ".".join(parents))
        setattr(owner, name, expand(getattr(owner, name)))
    for mapping in (cfg.benchmarks.files, cfg.benchmarks.adapter_args, cfg.model.vision.options):
        for k, v in mapping.items():
            mapping[k] = expand(v)


MINIMUMS: tuple[tuple[str, int, str], ...] = (
    ("run.trials", 1, "--trials"), ("run.limit", 1, "--limit"), ("run.batch_size", 1, "--batch-size"),
    ("run.threads", 1, ""), ("run.query_set_size", 1, ""), ("run.zero_shot_text_demos", 0, ""),
    ("run.bootstrap", 0, ""), ("run.rices_batch_size", 1, ""), ("run.rices_image_size", 1, ""),
    ("model.batch_size", 1, ""), ("model.max_context", 1, ""), ("model.latent_cache_mb", 0, ""),
    ("benchmarks.generation.max_new_tokens", 1, ""), ("benchmarks.generation.num_beams", 1, ""),
    ("benchmarks.query_set_size", 1, ""), ("benchmarks.ensemble_orders", 1, ""),
)
"""Integer settings and their smallest valid value (null = unset is always allowed)."""


def _get(cfg: Config, key: str) -> Any:
    value: Any = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _check_values(cfg: Config) -> None:
    """Refuse values that would run but give wrong or empty results (one line naming the key)."""
    r, b = cfg.run, cfg.benchmarks
    for key, low, flag in MINIMUMS:
        value = _get(cfg, key)
        if value is not None and value < low:
            raise UserError(f"{key}{f' ({flag})' if flag else ''} must be >= {low}, got {value}")
    if any(k < 0 for k in r.shots):
        raise UserError(f"run.shots (--shots) must be >= 0, got {r.shots}")
    for key, values in (("run.shots (--shots)", r.shots), ("run.seeds (--seeds)", r.seeds or [])):
        dup = sorted({v for v in values if values.count(v) > 1})
        if dup:
            raise UserError(f"{key} lists {', '.join(map(str, dup))} more than once; give each value once")
    if not r.shots:
        raise UserError("run.shots (--shots) is empty; give at least one shot count, e.g. --shots 0 4")
    if not math.isfinite(b.generation.length_penalty):
        raise UserError("benchmarks.generation.length_penalty must be a finite number, "
                        f"got {b.generation.length_penalty}")
    for key, value, allowed in (("run.subset", r.subset, SUBSETS),
                                ("run.on_bad_sample", r.on_bad_sample, ON_BAD_SAMPLE),
                                (f"benchmark {b.id}: mode", b.mode, tuple(REQUEST_KINDS.names())),
                                ("model.precision", cfg.model.precision, PRECISIONS),
                                ("model.engine", cfg.model.engine, ENGINES)):
        if value not in allowed:
            raise UserError(f"{key} must be one of {', '.join(allowed)}, got '{value}'")
    if not DEVICE.match(cfg.model.device):
        raise UserError(f"model.device must be auto, cpu, mps, cuda or cuda:N, got '{cfg.model.device}'")
    frame_sampling(b)  # a video card's frames block is checked at start-up too
    if b.prompt not in cfg.prompts.templates:
        raise UserError(f"prompt family '{cfg.prompts.name}' has no template '{b.prompt}' needed by {b.id}; "
                        f"it has: {', '.join(sorted(cfg.prompts.templates))}")
