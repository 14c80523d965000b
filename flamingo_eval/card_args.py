"""Start-up checks of the names and nested arguments a benchmark card and the run refer to.

``adapter_args`` and ``metric.args`` are free-form mappings in the card schema (each adapter and metric
takes its own keys), so Hydra accepts any key in them; this module checks them against the argument type
each adapter / metric declares -- ``Adapter.Args`` (a dataclass, ``NoArgs`` by default) and the typed
signature of the metric's registered factory; see :mod:`flamingo_eval.plugin_args` -- and builds the
metric once, so a misspelt key, a wrong type or a bad value fails with one line naming the card and the
key before any data or weights load. The name lists (adapters, metrics, demo
samplers, answer extractors) come from the registries. Light: no torch import.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from flamingo_eval.errors import UserError
from flamingo_eval.plugin_args import factory_schema, parse


def registries() -> None:
    """Import the packages whose import fills the registries (adapters, metrics, samplers, extractors)."""
    import flamingo_eval.benchmarks  # noqa: F401
    import flamingo_eval.metrics  # noqa: F401
    import flamingo_eval.prompts  # noqa: F401


def check_adapter_args(card: Any) -> None:
    """The card's ``adapter_args`` against its adapter's ``Args`` type (``Adapter.parse_args``)."""
    from flamingo_eval.registry import ADAPTERS

    registries()
    try:
        adapter = ADAPTERS.get(card.adapter)
    except UserError as e:
        raise UserError(f"benchmarks.adapter: {e} (card {card.id})") from None
    adapter.parse_args(card)


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
    args = parse(factory_schema(factory, card.metric.name), card.metric.args, "benchmarks.metric.args", owner, card.id)
    given = [f.name for f in dataclasses.fields(args) if f.name in card.metric.args]
    return factory, {k: getattr(args, k) for k in given}  # defaults stay the factory's own


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
    """Every start-up check of this module (``config_load.validate`` calls it)."""
    check_names(cfg)
    check_adapter_args(cfg.benchmarks)
    metric_args(cfg.benchmarks)
