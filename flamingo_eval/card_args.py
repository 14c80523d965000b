"""Start-up checks of the names and nested arguments a benchmark card and the run refer to.

``adapter_args`` and ``metric.args`` are free-form mappings in the card schema (each adapter and metric
takes its own keys), so Hydra accepts any key in them; this module checks them against the schema each
adapter / metric declares -- ``Adapter.Args`` (a dataclass) and the typed signature of the metric's
registered factory -- and builds the metric once, so a misspelt key, a wrong type or a bad value fails
with one line naming the key before any data or weights load. The name lists (adapters, metrics, demo
samplers, answer extractors) come from the registries. Light: no torch import.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from flamingo_eval.errors import UserError


def registries() -> None:
    """Import the packages whose import fills the registries (adapters, metrics, samplers, extractors)."""
    import flamingo_eval.benchmarks  # noqa: F401
    import flamingo_eval.metrics  # noqa: F401
    import flamingo_eval.prompts  # noqa: F401


def _typed(schema: type, values: dict[str, Any], where: str, owner: str) -> dict[str, Any]:
    """``values`` merged onto the dataclass ``schema``: unknown keys, wrong types and missing required
    keys fail as one line naming ``where.<key>``; returns the typed values (defaults filled in)."""
    fields = [f.name for f in dataclasses.fields(schema)]
    unknown = [k for k in values if k not in fields]
    if unknown:
        takes = ", ".join(fields) or "no arguments"
        raise UserError(f"{where}.{unknown[0]}: unknown argument; {owner} takes {takes}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), values)
        out: dict[str, Any] = OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)  # type: ignore[assignment]
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or ""
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{where}{'.' + key if key else ''}: {msg} ({owner})") from None
    return out


def _annotation(hint: Any) -> Any:
    """A factory parameter's type as OmegaConf can check it (``Sequence[X]`` -> ``list[X]``)."""
    origin = typing.get_origin(hint)
    if origin in (Sequence, list, tuple):
        args = typing.get_args(hint)
        return list[args[0]] if args and args[0] is not Ellipsis else list[Any]  # type: ignore[valid-type]
    return hint


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def factory_schema(factory: Callable[..., Any], name: str) -> type:
    """A dataclass of ``factory``'s keyword parameters (typed by its annotations, defaults kept)."""
    hints = typing.get_type_hints(factory)
    fields: list[tuple[str, Any, Any]] = []
    for p in inspect.signature(factory).parameters.values():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        hint = _annotation(hints.get(p.name, Any))
        default = MISSING if p.default is p.empty else p.default  # MISSING: a required argument
        if isinstance(default, list | tuple | dict):  # mutable defaults need a factory in a dataclass
            made = dataclasses.field(default_factory=functools.partial(copy.deepcopy, _plain(default)))
        else:
            made = dataclasses.field(default=default)
        fields.append((p.name, hint, made))
    return dataclasses.make_dataclass(f"{name}_args", fields)


def check_adapter_args(card: Any) -> None:
    """The card's ``adapter_args`` against its adapter's ``Args`` schema (skipped when it declares none)."""
    from flamingo_eval.registry import ADAPTERS

    registries()
    try:
        adapter = ADAPTERS.get(card.adapter)
    except UserError as e:
        raise UserError(f"benchmarks.adapter: {e} (card {card.id})") from None
    schema = getattr(adapter, "Args", None)
    if schema is not None:
        _typed(schema, dict(card.adapter_args), "benchmarks.adapter_args", f"adapter '{card.adapter}'")


def metric_args(card: Any) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The card metric's factory and its ``metric.args``, checked against the factory's typed signature
    (unknown key, wrong type, missing required argument: one line naming the key)."""
    from flamingo_eval.registry import METRICS

    registries()
    try:
        factory = METRICS.get(card.metric.name)
    except UserError as e:
        raise UserError(f"benchmarks.metric.name: {e} (card {card.id})") from None
    owner = f"metric '{card.metric.name}'"
    args = _typed(factory_schema(factory, card.metric.name), dict(card.metric.args), "benchmarks.metric.args", owner)
    return factory, {k: v for k, v in args.items() if k in card.metric.args}  # defaults stay the factory's own


def build_metric(card: Any) -> Any:
    """The card's metric, built from checked arguments; a value the metric refuses is one line too.

    Not part of :func:`check_card`: building may need the metric's data (OK-VQA stemming: nltk), which
    listing or composing a card must not.
    """
    factory, args = metric_args(card)
    try:
        return factory(**args)
    except UserError as e:
        raise UserError(f"benchmarks.metric.args: {e}") from None


def check_names(cfg: Any) -> None:
    """Sampler and answer-extractor names against their registries."""
    from flamingo_eval.registry import EXTRACTORS, SAMPLERS

    registries()
    if cfg.run.sampler not in SAMPLERS:
        raise UserError(f"run.sampler must be one of {', '.join(SAMPLERS.names())}, got '{cfg.run.sampler}'")
    template = cfg.prompts.templates.get(cfg.benchmarks.prompt)
    if template is not None and template.extractor not in EXTRACTORS:
        raise UserError(f"prompts.templates.{cfg.benchmarks.prompt}.extractor must be one of "
                        f"{', '.join(EXTRACTORS.names())}, got '{template.extractor}'")


def check_card(cfg: Any) -> None:
    """Every start-up check of this module (``config.validate`` calls it)."""
    check_names(cfg)
    check_adapter_args(cfg.benchmarks)
    metric_args(cfg.benchmarks)
