"""``tools/gpu_check.sh --dry-run``: the GPU check's every stage on the CPU with tiny shapes (the same code
the maintainer runs on a GPU machine), ending in one JSON and one markdown table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_dry_run_writes_json_and_table(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "2"}
    run = subprocess.run(["bash", str(ROOT / "tools" / "gpu_check.sh"), "--dry-run", "--out", str(out)],
                         capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    data = json.loads((out / "gpu_check.json").read_text())
    assert [s["stage"] for s in data["stages"]] == ["env", "tests", "bench"]
    assert data["tests"]["failed"] == 0 and data["tests"]["passed"] >= 5, data["tests"]
    runs = data["bench"]["runs"]
    assert set(runs) == {"engine_cold", "engine_steady", "reference"}, data["bench"].get("errors")
    cold = runs["engine_cold"]
    assert cold["samples_per_s"] > 0 and cold["decode_tokens"] > 0 and cold["prefill_mfu"] >= 0
    assert {"vision", "prefill", "decode"} <= set(cold["phases"])
    assert runs["engine_steady"]["vision_encodes"] == cold["queries"]  # only the queries' own images
    assert data["bench"]["prefill_gflop"] > 0 and data["bench"]["vision_gflop_per_image"] > 0
    table = (out / "gpu_check.md").read_text()
    assert "| engine_cold |" in table and "gpu-marked tests:" in table


def test_gpu_check_needs_an_output_dir() -> None:
    run = subprocess.run(["bash", str(ROOT / "tools" / "gpu_check.sh")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--out DIR is required" in run.stderr
