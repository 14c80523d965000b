"""torchrun + ``model.device_map`` through the CLI: 2 processes, each splitting the model into two stages
over its own (stand-in) devices, give the plain single-process run's predictions byte for byte; the
record names the placement and the time per phase."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from flamingo_eval.cli import main

ARGS = ["run", "easyvqa", "--model", "tiny", "--shots", "0", "2", "--limit", "7"]
SPLIT = ["model.device_map=[0-0,1-1]", "model.devices=[cpu,cpu]"]


def test_torchrun_ranks_each_split_over_their_devices(tmp_path: Path) -> None:
    plain, multi = tmp_path / "plain", tmp_path / "multi"
    assert main([*ARGS, "--output", str(plain)]) == 0
    env = {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "flamingo_eval", *ARGS, *SPLIT, "--output", str(multi)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (multi / "predictions.jsonl").read_bytes() == (plain / "predictions.jsonl").read_bytes()
    rec = json.loads((multi / "record.json").read_text())
    assert rec["execution"]["world_size"] == 2
    assert rec["model"]["placement"] == "cpu: vision, perceiver, io, layer 0; cpu: layer 1"
    assert rec["model"]["precision"] == "fp32"  # precision auto: fp32 on CPU
    phases = rec["throughput"]["phases"]  # rank 0's own model time plus the run's data and scoring time
    assert {"data", "vision", "prefill", "decode", "scoring"} <= set(phases), phases
    assert all(v >= 0 for v in phases.values()) and sum(phases.values()) <= rec["throughput"]["seconds"] * 1.05
    # the split is a run-time choice (like the batch size): it does not change the config hash
    assert rec["config_hash"] == json.loads((plain / "record.json").read_text())["config_hash"]
