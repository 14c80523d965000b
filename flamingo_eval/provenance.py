"""Provenance for run records: git state, library versions, platform, threads and processor models.

Floats computed on another CPU or GPU, or with another thread count, may differ in the last bits (kernels
and reduction orders are chosen per machine, shape and thread count); the record says where it ran.
"""

from __future__ import annotations

import platform
import secrets
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("flamingo-eval", "torch", "transformers", "open_clip_torch", "pycocoevalcap", "pandas", "hydra-core",
             "numpy", "pillow", "scikit-learn", "nltk")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def cpu_model() -> str | None:
    """The CPU's marketing name (``model name`` in /proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def gpu_model(device: Any = None) -> str | None:
    """Name of the CUDA device the model runs on (``device``: a ``torch.device`` or str), None off CUDA."""
    if device is None or not str(device).startswith("cuda"):
        return None
    import torch

    return str(torch.cuda.get_device_name(torch.device(device)))


def torch_threads() -> int | None:
    """``torch.get_num_threads()``: the intra-op threads CPU kernels were split over."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def provenance(command: str = "", device: Any = None) -> dict[str, Any]:
    """Git state, library versions, Python, platform, torch threads, CPU model, the GPU model of
    ``device`` (the model's device; None on CPU) and the command line."""
    libs = {}
    for name in LIBRARIES:
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_sha": _git("rev-parse", "HEAD"), "git_dirty": bool(status) if status is not None else None,
            "libraries": libs, "python": platform.python_version(), "platform": platform.platform(),
            "torch_threads": torch_threads(), "cpu_model": cpu_model(), "gpu_model": gpu_model(device),
            "command": command or " ".join(sys.argv)}


def run_id(benchmark: str, model: str) -> str:
    """A unique run id: ``<benchmark>-<model>-<UTC time>-<hex>``."""
    return f"{benchmark}-{model}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(3)}"
