"""Precision, device and weights-fingerprint helpers shared by every model builder (OpenFlamingo, IDEFICS).

Kept apart from ``models/build.py`` so that other architectures' builders and RICES can use them without
importing the OpenFlamingo builder (which imports them: that would be an import cycle).
"""

from __future__ import annotations

import hashlib

import torch

from flamingo_eval.errors import UserError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
"""``model.precision`` -> dtype; with ``auto`` these are ``config.PRECISIONS`` (a test holds them equal)."""


def resolve_precision(precision: str, device_type: str) -> torch.dtype:
    """``model.precision`` as a dtype: ``auto`` is bf16 on CUDA (its tensor cores), fp32 elsewhere."""
    if precision == "auto":
        return torch.bfloat16 if device_type == "cuda" else torch.float32
    if precision not in DTYPES:
        raise UserError(f"model.precision must be auto or one of {sorted(DTYPES)}, got '{precision}'")
    return DTYPES[precision]


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over parameter names, shapes and bytes (a run record names exactly these weights)."""
    h = hashlib.sha256()
    for name, p in model.state_dict().items():
        h.update(f"{name}:{tuple(p.shape)}:{p.dtype}".encode())
        h.update(p.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()


def resolve_device(name: str) -> str:
    """``model.device`` as torch understands it: ``auto`` is cuda when available, else cpu."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name
