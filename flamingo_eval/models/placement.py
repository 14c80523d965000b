"""One model over several devices: ``model.device_map`` = ``auto`` | ``balanced`` | explicit layer ranges.

A Flamingo model is cut into placement units that never split: the vision encoder, the perceiver, the
LM's "io" part (token embeddings, final norm and LM head, kept together because MPT, OPT and many LLaMA
checkpoints tie the head to the embeddings) and each decoder layer *with* its gated cross-attention
block. Units run where they are placed (pipeline stages, one stage at a time); ``Flamingo.forward`` moves
only the activation (B, T, D) between stages, and each layer's KV cache and media K/V are created on the
layer's own device. Nothing is copied per step besides that activation.

Where the units go:

* ``auto``: accelerate's ``infer_auto_device_map`` fills the devices in order (vision, perceiver, io,
  layers 0..L-1), each up to its memory budget;
* ``balanced``: the same, with accelerate's ``get_balanced_memory`` budgets (about equal weights per device);
* explicit ranges, ``[0-11,12-23]`` (or the string ``"0-11,12-23"``): stage j holds those decoder layers
  and runs on the j-th device; vision, perceiver and io go with stage 0.

The devices are those this process owns (:func:`owned_devices`): ``model.devices`` when given, else the
GPUs of this node divided among its torchrun processes, N GPUs / K processes each (the VLMEvalKit
convention). Memory budget per device: ``model.max_memory`` (e.g. ``40GiB``), else 80% of what is free, the
rest left to activations and caches. Device indices given to accelerate are positions in that list, so
tests can model two stages as ``["cpu", "cpu"]``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from flamingo_eval.errors import UserError
from flamingo_eval.models.flamingo import Flamingo, Placement

__all__ = ["Placement", "apply_placement", "owned_devices", "parse_layer_ranges", "place_model", "plan_placement"]

FREE_FRACTION = 0.8
"""Share of a device's free memory the weights may take when ``model.max_memory`` is not set."""


def _device(name: str | torch.device) -> torch.device:
    """A device with its index (``cuda`` -> ``cuda:<current>``), so equal devices compare equal."""
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"model.devices: '{name}' is not a device name (e.g. cuda:0, cpu)") from None
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_available() else 0)
    return dev


def owned_devices(device: str, local_rank: int = 0, local_world_size: int = 1, explicit: Sequence[str] | None = None,
                  gpu_count: int | None = None) -> list[torch.device]:
    """The devices this process may use: ``explicit`` if given; on CUDA its share of the node's GPUs.

    With N GPUs and K processes on the node (torchrun ``--nproc-per-node=K``), process ``local_rank``
    owns GPUs ``local_rank * N/K .. (local_rank + 1) * N/K - 1``. A single process given ``cuda:N`` owns
    that GPU alone; in a multi-process job ``cuda:N`` (what ``distributed.local_device`` hands the model:
    the first GPU of the share) stands for the whole share.
    """
    if explicit:
        return [_device(d) for d in explicit]
    if not (device.startswith("cuda") or device == "auto"):
        return [_device(device)]
    n = torch.cuda.device_count() if gpu_count is None else gpu_count
    if n == 0:
        if device == "auto":
            return [torch.device("cpu")]
        raise UserError("model.device=cuda but no CUDA device is visible; use model.device=cpu or auto")
    if ":" in device and local_world_size == 1:  # one explicit GPU
        return [_device(device)]
    if local_world_size > n:
        raise UserError(f"{local_world_size} processes on this node share {n} GPU(s): model.device_map needs at "
                        f"least one GPU per process; start torchrun with --nproc-per-node={n} or fewer")
    per = n // local_world_size
    return [torch.device("cuda", local_rank * per + j) for j in range(per)]


def parse_layer_ranges(spec: str | Sequence[Any], n_layers: int) -> list[range]:
    """``"0-11,12-23"`` or ``["0-11", "12-23"]`` -> consecutive ranges covering layers 0..n_layers-1 in order."""
    items = [str(x).strip() for x in (spec.split(",") if isinstance(spec, str) else spec)]
    ranges: list[range] = []
    for item in items:
        lo, sep, hi = item.partition("-")
        try:
            r = range(int(lo), int(hi if sep else lo) + 1)
        except ValueError:
            raise UserError(f"model.device_map: '{item}' is not a layer range like 0-11 (use auto, balanced or "
                            "ranges such as [0-11,12-23])") from None
        expected = ranges[-1].stop if ranges else 0
        if r.start != expected or len(r) == 0:
            raise UserError(f"model.device_map: range '{item}' must start at layer {expected} (ranges are consecutive, "
                            f"in order, covering layers 0-{n_layers - 1})")
        ranges.append(r)
    if not ranges or ranges[-1].stop != n_layers:
        raise UserError(f"model.device_map: ranges {items} must cover layers 0-{n_layers - 1} exactly")
    return ranges


def _explicit(ranges: list[range], devices: Sequence[torch.device]) -> Placement:
    if len(ranges) > len(devices):
        raise UserError(f"model.device_map: {len(ranges)} stages but this process owns {len(devices)} device(s) "
                        f"({', '.join(map(str, devices))}); give fewer ranges or more devices (model.devices)")
    layers = tuple(j for j, r in enumerate(ranges) for _ in r)
    return Placement(devices=tuple(devices), vision=0, perceiver=0, io=0, layers=layers)


class _Layer(nn.Module):
    """Placement unit: a decoder layer and its cross-attention block (sizes only; never run)."""

    def __init__(self, block: nn.Module, xattn: nn.Module | None) -> None:
        super().__init__()
        self.block = block
        self.xattn = xattn


class _Params(nn.Module):
    """Placement unit holding loose parameters/buffers (the LM's io part); sizes only, never run."""

    def __init__(self, tensors: list[tuple[str, Tensor, bool]]) -> None:
        super().__init__()
        for name, t, is_param in tensors:
            if is_param:
                self.register_parameter(name, t)  # type: ignore[arg-type]
            else:
                self.register_buffer(name, t)


def _io_tensors(model: Flamingo) -> list[tuple[nn.Module, str, Tensor, bool]]:
    """(module, name, tensor, is_parameter) of the decoder outside its blocks; shared tensors once."""
    inside = set(model.lang.blocks.modules())
    seen: set[int] = set()
    out = []
    for mod in model.lang.modules():
        if mod in inside:
            continue
        for is_param, table in ((True, mod._parameters), (False, mod._buffers)):
            for name, t in table.items():
                if t is not None and id(t) not in seen:
                    seen.add(id(t))
                    out.append((mod, name, t, is_param))
    return out


def _view(model: Flamingo) -> nn.Module:
    """The model as accelerate should see it: units in execution order."""
    view = nn.Module()
    view.vision = model.vision_encoder
    view.perceiver = model.perceiver
    view.io = _Params([(f"t{j}", t, p) for j, (_, _, t, p) in enumerate(_io_tensors(model))])
    view.layers = nn.ModuleList(_Layer(b, model.xattn[str(i)] if str(i) in model.xattn else None)
                                for i, b in enumerate(model.lang.blocks))
    return view


def _budget(dev: torch.device, max_memory: str | None) -> int:
    """Bytes the weights may take on ``dev``: ``max_memory`` if given, else a share of its free memory."""
    if max_memory:
        from accelerate.utils import convert_file_size_to_int

        try:
            return int(convert_file_size_to_int(max_memory))
        except ValueError:
            raise UserError(f"model.max_memory: '{max_memory}' is not a size like 40GiB or 500MB") from None
    if dev.type == "cuda":
        free = torch.cuda.mem_get_info(dev)[0]
    else:
        import psutil

        free = psutil.virtual_memory().available
    return int(free * FREE_FRACTION)


def _accelerate(model: Flamingo, devices: Sequence[torch.device], dtype: torch.dtype, balanced: bool,
                max_memory: str | None) -> Placement:
    try:
        from accelerate.utils import get_balanced_memory, infer_auto_device_map
    except ImportError:
        raise UserError("model.device_map=auto|balanced needs accelerate: pip install accelerate") from None
    view = _view(model)
    no_split = ["_Layer", "_Params", "PerceiverResampler", type(model.vision_encoder).__name__]
    # accelerate reads integer keys as GPU indices; ours are positions in ``devices`` (which may be CPUs in
    # tests), so its "device N is not available" notice is silenced.
    budgets: dict[int | str, int] = {j: _budget(d, max_memory) for j, d in enumerate(devices)}
    log = logging.getLogger("accelerate.utils.modeling")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        if balanced and len(devices) > 1:
            budgets = get_balanced_memory(view, max_memory=budgets, no_split_module_classes=no_split, dtype=dtype)
        dmap = infer_auto_device_map(view, max_memory=budgets, no_split_module_classes=no_split, dtype=dtype)
    finally:
        log.setLevel(level)

    def where(unit: str) -> int:
        name = unit
        while name not in dmap:
            if not name:
                break
            name = name.rpartition(".")[0]
        slot = dmap.get(name)
        if not isinstance(slot, int):
            need = sum(t.numel() for t in view.parameters()) * torch.finfo(dtype).bits // 8
            have = sum(v for v in budgets.values())
            raise UserError(f"model.device_map: the weights (~{_size(need)}) do not fit on "
                            f"{', '.join(map(str, devices))} (~{_size(have)} allowed); add GPUs (fewer "
                            "torchrun processes per node), use model.precision=bf16, or raise model.max_memory")
        return slot

    return Placement(devices=tuple(devices), vision=where("vision"), perceiver=where("perceiver"), io=where("io"),
                     layers=tuple(where(f"layers.{i}") for i in range(len(model.lang.blocks))))


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def plan_placement(model: Flamingo, spec: str | Sequence[Any], devices: Sequence[torch.device], dtype: torch.dtype,
                   max_memory: str | None = None) -> Placement:
    """Where each unit goes for ``spec`` (auto | balanced | layer ranges) over ``devices``."""
    if not devices:
        raise UserError("model.device_map: no device to place the model on")
    if isinstance(spec, str) and spec in ("auto", "balanced"):
        return _accelerate(model, devices, dtype, spec == "balanced", max_memory)
    return _explicit(parse_layer_ranges(spec, len(model.lang.blocks)), devices)


def apply_placement(model: Flamingo, placement: Placement) -> None:
    """Move every unit to its device (each tensor moves once) and tell the forward where layers run."""
    blocks, dev = model.lang.blocks, placement.devices
    if len(placement.layers) != len(blocks):
        raise ValueError(f"placement has {len(placement.layers)} layers, the model {len(blocks)}")
    model.vision_encoder.to(dev[placement.vision])
    model.perceiver.to(dev[placement.perceiver])
    for i, block in enumerate(blocks):
        block.to(dev[placement.layers[i]])
        if str(i) in model.xattn:
            model.xattn[str(i)].to(dev[placement.layers[i]])
    for mod, name, t, is_param in _io_tensors(model):
        if is_param:
            t.data = t.data.to(dev[placement.io])  # in place: tied modules keep sharing the parameter
        else:
            mod._buffers[name] = t.to(dev[placement.io])
    model.stages = placement


def place_model(model: Flamingo, spec: str | Sequence[Any], devices: Sequence[torch.device], dtype: torch.dtype,
                max_memory: str | None = None) -> Placement:
    """Plan and apply: the model's weights end on their devices in ``dtype``."""
    model.to(dtype=dtype)
    placement = plan_placement(model, spec, devices, dtype, max_memory)
    apply_placement(model, placement)
    return placement
