"""Tensor shapes of a weights file without torch, and the bridge sizes an OpenFlamingo checkpoint implies.

:func:`tensor_shapes` reads a ``torch.save`` zip file's pickle with an unpickler whose ``find_class`` never
imports anything: a tensor becomes its shape, every other class a harmless stub (nothing in the file runs).
safetensors files give their shapes from the JSON header. The legacy (non-zip) torch format gives ``{}``.

:func:`implied_bridge` turns an OpenFlamingo checkpoint's shapes into the ``model.flamingo.*`` sizes they fix
(perceiver depth, latents, widths, feed-forward multipliers; heads x dim_head as one product).
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

from flamingo_eval.models.weight_files import sniff

__all__ = ["BridgeShapes", "bridge_settings", "implied_bridge", "tensor_shapes"]


class _Tensor:
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape


class _Stub:
    """Whatever the pickle names that is not a tensor: accepts any construction and state, holds nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        """Ignore list-style state."""

    def extend(self, values: Any) -> None:
        """Ignore list-style state."""


class _Dict(dict):  # type: ignore[type-arg]
    """``collections.OrderedDict`` (a state dict carries ``_metadata`` as an attribute, so it needs a __dict__)."""


def _rebuild_tensor(storage: Any, offset: Any, size: Any, *args: Any) -> _Tensor:
    return _Tensor(tuple(int(s) for s in size))


def _rebuild_parameter(data: Any, *args: Any) -> Any:
    return data


def _rebuild_from_type(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    return func(*args)


class _ShapeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return _Dict
        if module.startswith("torch") and name.startswith("_rebuild_tensor"):
            return _rebuild_tensor
        if module.startswith("torch") and name.startswith("_rebuild_parameter"):
            return _rebuild_parameter
        if module.startswith("torch") and name == "_rebuild_from_type_v2":
            return _rebuild_from_type
        return _Stub

    def persistent_load(self, pid: Any) -> Any:
        return None


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of a safetensors or zip ``torch.save`` file (nested state dicts flattened with ``.``);
    ``{}`` when the file is another kind or cannot be parsed."""
    kind = sniff(path)
    try:
        if kind == "safetensors":
            with path.open("rb") as f:
                n = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(n))
            return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
        if kind == "zip":
            with zipfile.ZipFile(path) as z:
                member = next((m for m in z.namelist() if m.endswith("data.pkl") and m.count("/") == 1), None)
                if member is None:
                    return {}
                with z.open(member) as f:
                    obj = _ShapeUnpickler(f).load()
            return dict(_flatten(obj, ""))
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, UnicodeDecodeError, pickle.UnpicklingError,
            TypeError, KeyError, AttributeError, IndexError):
        return {}
    return {}


def _flatten(obj: Any, prefix: str) -> list[tuple[str, tuple[int, ...]]]:
    if isinstance(obj, _Tensor):
        return [(prefix, obj.shape)]
    if isinstance(obj, dict):
        out: list[tuple[str, tuple[int, ...]]] = []
        for k, v in obj.items():
            if isinstance(k, str):
                out += _flatten(v, f"{prefix}.{k}" if prefix else k)
        return out
    return []


class BridgeShapes(dict):  # type: ignore[type-arg]
    """Sizes implied by a checkpoint: ``perceiver_depth``, ``num_latents``, ``vision_width``,
    ``perceiver_inner`` (heads x dim_head), ``perceiver_ff_mult``, ``lm_width``, ``xattn_inner``,
    ``xattn_ff_mult``; a key is absent when the checkpoint does not fix it."""


_PERCEIVER_LAYER = re.compile(r"^perceiver\.layers\.(\d+)\.")


def implied_bridge(shapes: dict[str, tuple[int, ...]]) -> BridgeShapes:
    """The bridge sizes an OpenFlamingo checkpoint's tensor shapes fix (``module.`` / ``model_state_dict.``
    prefixes of training checkpoints are dropped)."""
    flat: dict[str, tuple[int, ...]] = {}
    for k, v in shapes.items():
        for pre in ("model_state_dict.", "state_dict.", "module."):
            k = k[len(pre):] if k.startswith(pre) else k
        flat[k] = v
    out = BridgeShapes()
    depths = [int(m.group(1)) for k in flat for m in [_PERCEIVER_LAYER.match(k)] if m]
    if depths:
        out["perceiver_depth"] = max(depths) + 1
    latents = flat.get("perceiver.latents")
    if latents is not None and len(latents) == 2:
        out["num_latents"], out["vision_width"] = latents
    q = flat.get("perceiver.layers.0.0.to_q.weight")
    if q is not None and len(q) == 2:
        out["perceiver_inner"] = q[0]
    ff = flat.get("perceiver.layers.0.1.1.weight")
    if ff is not None and len(ff) == 2 and ff[1]:
        out["perceiver_ff_mult"] = _mult(ff[0], ff[1])
    for k, v in sorted(flat.items()):
        if ".gated_cross_attn_layer" not in k and "gated_cross_attn_layers." not in k or len(v) != 2:
            continue
        if k.endswith(".attn.to_q.weight") and "xattn_inner" not in out:
            out["xattn_inner"], out["lm_width"] = v
        elif k.endswith(".ff.1.weight") and "xattn_ff_mult" not in out and v[1]:
            out["xattn_ff_mult"] = _mult(v[0], v[1])
    return out


def _mult(rows: int, width: int) -> float | int:
    m = rows / width
    return int(m) if m == int(m) else m


_DEFAULTS = {"perceiver_depth": 6, "perceiver_heads": 8, "perceiver_dim_head": 64, "num_latents": 64,
             "perceiver_ff_mult": 4, "xattn_heads": 8, "xattn_dim_head": 64, "xattn_ff_mult": 4}
"""OpenFlamingo's sizes (``FlamingoConfig``'s defaults): used where neither a setting nor the keys decide."""


def bridge_settings(implied: BridgeShapes, given: dict[str, Any], name: str,
                    origin: Any = None) -> dict[str, Any]:
    """The ``model.flamingo.*`` values to add so the bridge has the checkpoint's shapes.

    Args:
        implied: :func:`implied_bridge` of the checkpoint.
        given: The values set (command line, flamingo.json or the ``--model`` config); checked, never replaced.
        name: The checkpoint, for messages.
        origin: ``key -> str`` saying where a given value came from (appended to a message), optional.

    Raises:
        UserError: a given value the shapes contradict: one line naming both and the value to set.
    """
    from flamingo_eval.errors import UserError

    def clash(key: str, value: Any, fact: str, fix: Any, drop: bool = True) -> UserError:
        where = f" ({origin(key)})" if origin else ""
        todo = f"drop the setting (it is read from the checkpoint) or set it to {fix}" if drop else f"set it to {fix}"
        return UserError(f"model.flamingo.{key}={value}{where}, but checkpoint {name} {fact}; {todo}")

    out: dict[str, Any] = {}
    for key, fact in (("perceiver_depth", "has {} perceiver layers"), ("num_latents", "has {} perceiver latents")):
        if key in implied:
            if given.get(key) is not None and given[key] != implied[key]:
                raise clash(key, given[key], fact.format(implied[key]), implied[key])
            out[key] = implied[key]
    width, lm_width = implied.get("vision_width"), implied.get("lm_width")
    for prefix, inner_key, dim, what in (("perceiver", "perceiver_inner", width, "perceiver attention"),
                                         ("xattn", "xattn_inner", lm_width, "cross-attention")):
        inner = implied.get(inner_key)
        if inner is not None:
            out.update(_heads(prefix, inner, given, what, clash, name, origin))
        mult_key, ff = f"{prefix}_ff_mult", implied.get(f"{prefix}_ff_mult")
        if ff is not None and dim:
            mult = given.get(mult_key)
            if mult is not None and int(dim * mult) != int(dim * ff):
                raise clash(mult_key, mult, f"has a {int(dim * ff)}-wide {what} feed-forward on width {dim}", ff)
            out[mult_key] = ff if mult is None else mult
    return {k: v for k, v in out.items() if given.get(k, _DEFAULTS.get(k)) != v}


def _heads(prefix: str, inner: int, given: dict[str, Any], what: str, clash: Any, name: str,
           origin: Any) -> dict[str, int]:
    hk, dk = f"{prefix}_heads", f"{prefix}_dim_head"
    heads, dim_head = given.get(hk), given.get(dk)
    fact = f"has {inner}-wide {what} projections (heads x dim_head = {inner})"
    if heads is not None and dim_head is not None:
        if heads * dim_head != inner:
            from flamingo_eval.errors import UserError

            def said(k: str, v: int) -> str:
                return f"model.flamingo.{k}={v}" + (f" ({origin(k)})" if origin else "")

            raise UserError(f"{said(hk, heads)} x {said(dk, dim_head)} = {heads * dim_head}, but checkpoint {name} "
                            f"{fact}; change one of them")
        return {hk: heads, dk: dim_head}
    if heads is not None:
        if inner % heads:
            raise clash(hk, heads, fact, "a divisor of " + str(inner), drop=False)
        return {hk: heads, dk: inner // heads}
    if dim_head is not None:
        if inner % dim_head:
            raise clash(dk, dim_head, fact, "a divisor of " + str(inner), drop=False)
        return {hk: inner // dim_head, dk: dim_head}
    default = _DEFAULTS[dk]
    if inner % default:
        from flamingo_eval.errors import UserError

        raise UserError(f"checkpoint {name} has {inner}-wide {what} projections (heads x dim_head = {inner}), "
                        f"which OpenFlamingo's dim_head={default} does not divide, and the head count is not in the "
                        f"weights: set model.flamingo.{hk}=N (on the command line or in the directory's flamingo.json)")
    return {hk: inner // default, dk: default}
