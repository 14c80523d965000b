"""A Hydra/OmegaConf override error -> one line that says why (``model.batch_size=two`` -> "must be an integer").

Hydra reports a bad override as "Error merging override KEY=VALUE" or "Could not override 'KEY'. To append
... use +KEY=VALUE"; the reason (a value of the wrong type, a key that does not exist) sits on the exception's
cause. This module reads that cause and names the key, what it must be, and, for a misspelt key, the closest
existing one. Imports neither Hydra nor torch.
"""

from __future__ import annotations

import difflib
import itertools
from typing import Any

__all__ = ["explain_override_error"]

_TYPES = {"Integer": "an integer", "Float": "a number", "String": "a string", "Boolean": "true or false"}


def explain_override_error(e: BaseException, overrides: list[str]) -> str:
    """One line for a failed composition ``e`` (a Hydra exception, or an OmegaConf one) of ``overrides``."""
    cause = _omegaconf_cause(e)
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if cause is None:
        listed = str(e).split("Available options", 1)[1].splitlines()[1:] if "Available options" in str(e) else []
        options = [ln.strip() for ln in itertools.takewhile(lambda ln: ln.startswith("\t"), listed)]
        return f"bad override: {first}" + (f"; available: {', '.join(options)}" if options else "")
    key = str(getattr(cause, "full_key", "") or "")
    given = _given(key, overrides)
    prefix = f"bad override {given}: " if given else "config error: "
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    name = type(cause).__name__
    if name == "ValidationError":
        kind = next((w for t, w in _TYPES.items() if f"converted to {t}" in text), None)
        if kind is None and "not a valid bool" in text:
            kind = _TYPES["Boolean"]
        if kind is not None:
            return f"{prefix}{key} must be {kind}"
        return f"{prefix}{key}: {text}"
    if name in ("ConfigAttributeError", "ConfigKeyError"):
        return prefix + _unknown_key(cause, key)
    return f"{prefix}{text}" + (f" ({key})" if key and key not in text else "")


def _omegaconf_cause(e: BaseException) -> BaseException | None:
    seen: BaseException | None = e
    while seen is not None:
        if hasattr(seen, "full_key") and type(seen).__module__.startswith("omegaconf"):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _given(key: str, overrides: list[str]) -> str:
    """The override the user typed for ``key`` (``run.shots[0]`` -> ``run.shots=[a]``), or ''."""
    base = key.split("[", 1)[0]
    for o in overrides:
        k = o.split("=", 1)[0].lstrip("+~")
        if k == base or (base and base.startswith(k + ".")) or (k and k.startswith(base + ".")):
            return o
    return ""


def _unknown_key(cause: BaseException, key: str) -> str:
    parent: Any = getattr(cause, "parent_node", None)
    name = str(getattr(cause, "key", "") or key.rsplit(".", 1)[-1])
    section = key.rsplit(".", 1)[0] if "." in key else ""
    known = [str(k) for k in parent.keys()] if parent is not None and hasattr(parent, "keys") else []
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    where = f"{section}." if section else ""
    if close:
        return f"no key {key}; did you mean {where}{close[0]}?"
    if known:
        shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
        return f"no key {key}; {section or 'the config'} has: {shown}"
    return f"no key {key}"
