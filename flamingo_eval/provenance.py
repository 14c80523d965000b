"""Provenance for run records: git state, library versions, platform."""

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


def provenance(command: str = "") -> dict[str, Any]:
    libs = {}
    for name in LIBRARIES:
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_sha": _git("rev-parse", "HEAD"), "git_dirty": bool(status) if status is not None else None,
            "libraries": libs, "python": platform.python_version(), "platform": platform.platform(),
            "command": command or " ".join(sys.argv)}


def run_id(benchmark: str, model: str) -> str:
    return f"{benchmark}-{model}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(3)}"
