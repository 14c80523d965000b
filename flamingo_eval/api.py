"""The public surface of flamingo-eval: what code outside the package imports (docs/ARCHITECTURE.md, "Public API").

Everything else in the package is internal: its names may move between releases (modules keep re-exports only
where the package's own commands, tests or tools still need them). A typical programmatic run::

    from flamingo_eval import api

    cfg = api.compose_config("easyvqa", "mini", ["run.limit=20"])
    task = api.prepare(cfg)                     # data read and checked; no model loaded yet
    model = api.build_model(cfg.model)          # any object satisfying api.EvalModel works
    record = api.evaluate(cfg, model, out_dir, api.Reporter(), task=task)

Plugins register under a name with the ``register_*`` decorators (a benchmark card, a model config or the
command line then names them): ``@api.register_metric("my_metric")`` on a metric factory,
``@api.register_adapter("my_format")`` on an adapter class, ``api.register_architecture(api.Architecture(...))``
for a model family, and so on (docs/adding_a_benchmark.md,
docs/adding_a_model.md, docs/metrics.md).

Importing this module imports no torch; :func:`build_model` imports it when called.
"""

from __future__ import annotations

from typing import Any

from flamingo_eval.config import BenchmarkCard, Config, ModelCfg
from flamingo_eval.config_load import compose_config, validate
from flamingo_eval.display import Reporter
from flamingo_eval.errors import UserError
from flamingo_eval.models.architecture import Architecture, register_architecture
from flamingo_eval.registry import (
    ADAPTERS,
    DECODERS,
    EXTRACTORS,
    METRICS,
    REQUEST_KINDS,
    SAMPLERS,
    VIDEO_DECODERS,
    VISION,
)
from flamingo_eval.results.records import load_record, load_records
from flamingo_eval.results.run_record import RunRecord
from flamingo_eval.runner import evaluate
from flamingo_eval.task import Task, prepare
from flamingo_eval.types import EvalModel, GenerateRequest, InterleavedPrompt, RankRequest, Sample

__all__ = [
    "Architecture",
    "BenchmarkCard",
    "Config",
    "EvalModel",
    "GenerateRequest",
    "InterleavedPrompt",
    "ModelCfg",
    "RankRequest",
    "Reporter",
    "RunRecord",
    "Sample",
    "Task",
    "UserError",
    "build_model",
    "compose_config",
    "evaluate",
    "load_record",
    "load_records",
    "prepare",
    "register_adapter",
    "register_architecture",
    "register_decoder",
    "register_extractor",
    "register_metric",
    "register_request_kind",
    "register_sampler",
    "register_video_decoder",
    "register_vision",
    "validate",
]

register_adapter = ADAPTERS.register
"""``@register_adapter(name)`` on an :class:`~flamingo_eval.benchmarks.base.Adapter` subclass: a card's ``adapter``."""
register_metric = METRICS.register
"""``@register_metric(name)`` on a metric factory: a card's ``metric.name`` (docs/metrics.md)."""
register_sampler = SAMPLERS.register
"""``@register_sampler(name)`` on a demo sampler: ``--sampler NAME``."""
register_extractor = EXTRACTORS.register
"""``@register_extractor(name)`` on an answer extractor ``str -> str``: a prompt template's ``extractor``."""
register_request_kind = REQUEST_KINDS.register
"""``@register_request_kind(name)`` on a :class:`~flamingo_eval.request_kinds.RequestKind`: a card's ``mode``."""
register_decoder = DECODERS.register
"""``@register_decoder(model_type)`` on a decoder family (docs/adding_a_model.md)."""
register_vision = VISION.register
"""``@register_vision(name)`` on a vision encoder builder: ``model.vision.name``."""
register_video_decoder = VIDEO_DECODERS.register
"""``@register_video_decoder(name)`` on a video decoder (docs/video.md)."""


def build_model(cfg: ModelCfg) -> Any:
    """The :class:`EvalModel` the model config describes (weights loaded; imports torch).

    Raises:
        UserError: a model config, directory or weights file that cannot be loaded (one line).
    """
    from flamingo_eval.models.build import build_model as build  # torch: imported only when a model is built

    return build(cfg)
