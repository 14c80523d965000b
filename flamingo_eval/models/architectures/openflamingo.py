"""``model.architecture: openflamingo`` (the default): OpenFlamingo's layout on our engine.

Config: ``model.path`` (an OpenFlamingo-format directory), ``model.checkpoint``, ``model.flamingo.*``,
``model.lm``, ``model.vision``: completed by ``models/model_dir.py``, built by ``models/flamingo_build.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flamingo_eval.models.architecture import Architecture, Given, register_architecture

if TYPE_CHECKING:  # annotations only
    from flamingo_eval.config import ModelCfg
    from flamingo_eval.types import EvalModel


def _resolve(cfg: ModelCfg, given: Given) -> None:
    from flamingo_eval.models.model_dir import resolve_openflamingo

    resolve_openflamingo(cfg, given)


def _build(cfg: ModelCfg, batch_size: int | None) -> EvalModel:
    from flamingo_eval.models.flamingo_build import build_openflamingo

    return build_openflamingo(cfg, batch_size)


OPENFLAMINGO = register_architecture(Architecture("openflamingo", resolve=_resolve, build=_build))
