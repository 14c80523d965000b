"""The wheel carries the benchmark cards, prompt families, model configs and the trained mini bridge."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_ships_cards(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for group in ("benchmarks", "prompts"):
        for card in (ROOT / group).glob("*.yaml"):
            assert f"flamingo_eval/_cards/{group}/{card.name}" in names
    assert "flamingo_eval/conf/config.yaml" in names and "flamingo_eval/conf/model/mini.yaml" in names
    assert "flamingo_eval/conf/model/mini-blind.yaml" in names
    # the trained mini bridge ships as package data (mini.yaml: model.checkpoint=package:weights/...)
    assert "flamingo_eval/weights/mini-bridge.safetensors" in names
