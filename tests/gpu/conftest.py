"""GPU tests: run on CUDA (``pytest -m gpu tests/gpu``), skipped on a machine without one.

``tools/gpu_check.sh`` runs them; its ``--dry-run`` runs them on the CPU instead
(``FLAMINGO_EVAL_GPU_CHECK_DEVICE=cpu``) so the test suite proves the same code paths. The tokenizer is
``$FLAMINGO_EVAL_TOKENIZER`` (a directory carried to a GPU machine that lacks the packaged assets), else
the packaged SmolLM2 one. Under the check (``FLAMINGO_EVAL_GPU_CHECK=1``) importing the data-only
dependencies a GPU machine may lack (pycocoevalcap, nltk, gguf, ...) fails loudly.
"""

from __future__ import annotations

import importlib.abc
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

NOT_NEEDED = ("pycocoevalcap", "nltk", "gguf", "inflection", "av", "easy_vqa")


class _Forbid(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):  # type: ignore[no-untyped-def]
        if name.split(".")[0] in NOT_NEEDED:
            raise ImportError(f"{name} must not be imported by the GPU check")
        return None


if os.environ.get("FLAMINGO_EVAL_GPU_CHECK") == "1":
    sys.meta_path.insert(0, _Forbid())

# fp32 means fp32 in these tests: cuDNN convolutions (the tiny vision tower) would otherwise use TF32
# (10 mantissa bits), and engine and reference encode images in batches of different shapes.
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False


def check_device() -> str:
    return os.environ.get("FLAMINGO_EVAL_GPU_CHECK_DEVICE", "cuda")


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    if check_device().startswith("cuda") and not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device (tools/gpu_check.sh --dry-run runs these on CPU)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def device() -> str:
    return check_device()


@pytest.fixture(scope="session")
def tokenizer_path() -> str:
    return os.environ.get("FLAMINGO_EVAL_TOKENIZER", "smollm2")


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Eight seeded random RGB images (no data set needed on the GPU machine)."""
    root: Path = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(8):
        p = root / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths
