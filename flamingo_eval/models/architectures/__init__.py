"""The registered model architectures: every module of this package registers one (docs/adding_a_model.md).

The modules are found by listing the package, so adding an architecture is adding a module here (plus its
implementation) and changes no core module. They are imported on first use and must import nothing heavy
at module level (their hooks import the model code when called).
"""

from __future__ import annotations

import copy
import importlib
import pkgutil
from collections.abc import Iterable
from typing import TYPE_CHECKING

from flamingo_eval.models.architecture import Architecture, Given
from flamingo_eval.registry import ARCHITECTURES

if TYPE_CHECKING:  # annotations only
    from flamingo_eval.config import ModelCfg

__all__ = ["get_architecture", "load_architectures", "resolve_model"]


def load_architectures() -> list[str]:
    """Import every architecture module of this package (each registers itself); the registered names."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return ARCHITECTURES.names()


def get_architecture(name: str) -> Architecture:
    """The architecture registered as ``name``.

    Raises:
        UserError: no such architecture (the known ones named).
    """
    load_architectures()
    arch: Architecture = ARCHITECTURES.get(name)
    return arch


def resolve_model(cfg: ModelCfg, explicit: Iterable[str] | None = None) -> ModelCfg:
    """A copy of ``cfg`` completed and checked by its architecture (``model.architecture``); idempotent.

    ``compose_config`` calls it with the command line's keys; builders call it again (a no-op on a composed
    config; it completes a hand-built ``ModelCfg``).

    Args:
        cfg: The composed model config.
        explicit: Dotted keys given on the command line (``model.lm.path``): a model directory never replaces
            them. ``None``: every value already set counts as explicit (only unset fields are filled).

    Raises:
        UserError: an unknown architecture, or a bad or missing part of the model's files.
    """
    cfg = copy.deepcopy(cfg)
    get_architecture(cfg.architecture).resolve(cfg, Given(explicit))
    return cfg
