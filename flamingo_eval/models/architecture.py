"""What a model architecture registers (``ARCHITECTURES``): how it completes its config and how it builds.

An architecture is one :class:`Architecture` registered under the name ``model.architecture`` gives, from a
module of ``flamingo_eval/models/architectures/`` (each module there is imported when a model is resolved or
built: docs/adding_a_model.md). ``resolve`` runs when the config is composed and must stay light (no torch,
no weights read); ``build`` loads the weights and returns an :class:`~flamingo_eval.types.EvalModel`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flamingo_eval.registry import ARCHITECTURES

if TYPE_CHECKING:  # annotations only
    from flamingo_eval.config import ModelCfg
    from flamingo_eval.types import EvalModel

__all__ = ["Architecture", "Given", "register_architecture"]


class Given:
    """Whether a field was given by the user (so a model directory leaves it alone)."""

    def __init__(self, explicit: Iterable[str] | None) -> None:
        self.keys = None if explicit is None else {k.lstrip("+~") for k in explicit}

    def __call__(self, key: str, current: Any) -> bool:
        """Given on the command line; or, without that information, already set (``current``)."""
        if self.keys is None:
            return current not in (None, "")
        return self.cli(key)

    def cli(self, key: str) -> bool:
        """Given on the command line (``model.vision`` counts for every key below it)."""
        return self.keys is not None and any(key == k or key.startswith(k + ".") for k in self.keys)


@dataclass(frozen=True)
class Architecture:
    """One model family's hooks (``model.architecture: <name>``)."""

    name: str
    resolve: Callable[[ModelCfg, Given], None]
    """Complete and check a copy of the model config in place (its directory's files, sizes read from
    checkpoints); one ``UserError`` line on a bad value. Called at compose time: no torch, no weights."""
    build: Callable[[ModelCfg, int | None], EvalModel]
    """(resolved config, batch size or None for ``model.batch_size``) -> the ready eval model."""


def register_architecture(arch: Architecture) -> Architecture:
    """Register ``arch`` under its name in ``ARCHITECTURES``; returns it."""
    ARCHITECTURES.register(arch.name)(arch)
    return arch
