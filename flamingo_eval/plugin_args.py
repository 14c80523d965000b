"""The arguments a plugin (adapter, metric) takes from a benchmark card, declared and checked in one place.

A plugin declares its argument type: an adapter its ``Args`` dataclass (``NoArgs``: none), a metric the
typed keyword parameters of its registered factory (:func:`factory_schema` turns them into a dataclass).
The defaults live there and only there. :func:`parse` checks a card's mapping against the type -- an
unknown key, a wrong type or a missing required key is one :class:`UserError` line naming the card, the
key, the keys the plugin takes and, for a likely typo, the one it probably meant -- and returns the typed
instance the plugin reads. Light: no torch, no registry import.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from flamingo_eval.errors import UserError

__all__ = ["NoArgs", "factory_schema", "parse"]


@dataclasses.dataclass
class NoArgs:
    """The argument type of a plugin that takes no arguments (any key is an error)."""


def _unknown(key: str, fields: list[str], where: str, owner: str, card: str) -> UserError:
    takes = ", ".join(fields) or "no arguments"
    close = difflib.get_close_matches(key, fields, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return UserError(f"{where}.{key}: unknown argument; {owner} takes {takes}{hint} (card {card})")


def parse(schema: type, values: Mapping[str, Any] | None, where: str, owner: str, card: str) -> Any:
    """``values`` as an instance of the dataclass ``schema`` (defaults filled in, nested containers plain).

    ``where`` is the card key holding ``values`` (``benchmarks.adapter_args``), ``owner`` names the plugin
    (``adapter 'vqa'``) and ``card`` the card's id, for the one-line error.
    """
    values = dict(values or {})
    fields = [f.name for f in dataclasses.fields(schema)]
    unknown = [str(k) for k in values if k not in fields]
    if unknown:
        raise _unknown(unknown[0], fields, where, owner, card)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), values)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or ""
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{where}{'.' + key if key else ''}: {msg} ({owner}, card {card})") from None


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
    """A dataclass of ``factory``'s keyword parameters (typed by its annotations, defaults kept).

    Every parameter must be annotated and named (no ``**kwargs``): the signature is the metric's
    argument type, so an undeclared one is a programming error (``TypeError``), not a card error.
    """
    hints = typing.get_type_hints(factory)
    fields: list[tuple[str, Any, Any]] = []
    for p in inspect.signature(factory).parameters.values():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name not in hints:
            raise TypeError(f"{name}: factory parameter '{p.name}' must be a named, annotated keyword parameter")
        default = MISSING if p.default is p.empty else p.default  # MISSING: a required argument
        if isinstance(default, list | tuple | dict):  # mutable defaults need a factory in a dataclass
            made = dataclasses.field(default_factory=functools.partial(copy.deepcopy, _plain(default)))
        else:
            made = dataclasses.field(default=default)
        fields.append((p.name, _annotation(hints[p.name]), made))
    return dataclasses.make_dataclass(f"{name}_args", fields)
