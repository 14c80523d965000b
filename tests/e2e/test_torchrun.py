"""Data parallel under torchrun: 2 gloo processes on CPU give exactly the single-process run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flamingo_eval.cli import main
from tests.margins import assert_generation_margin

ARGS = ["run", "easyvqa", "--model", "tiny", "--shots", "0", "2", "--trials", "2", "--limit", "41"]


def results(run: Path) -> list[dict[str, Any]]:
    rec = json.loads((run / "record.json").read_text())
    assert rec["status"] == "complete"
    return [{**e, "trials": [{k: v for k, v in t.items() if k != "seconds"} for t in e["trials"]]}
            for e in rec["results"]]


def torchrun(*cmd: str, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={nproc}", *cmd], capture_output=True, text=True, timeout=300, env=env)


def raw_outputs(run: Path) -> list[str]:
    return [json.loads(ln)["raw_output"] for ln in (run / "predictions.jsonl").read_text().splitlines()]


def test_two_gloo_ranks_equal_one_process(tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    assert main([*ARGS, "--output", str(single)]) == 0
    # The ranks batch other samples together, with 1 thread each (the single run uses the default):
    # floats differ in the last bits. Byte-identical predictions are a fair test only because this
    # fixture has no near-tie (tests/margins.py); it covers the next test's samples too (a prefix).
    def noisy() -> list[str]:
        assert main([*ARGS, "--output", str(tmp_path / "noisy"), "--overwrite"]) == 0
        return raw_outputs(tmp_path / "noisy")

    assert_generation_margin(noisy, raw_outputs(single), seeds=(0,))
    out = torchrun("-m", "flamingo_eval", *ARGS, "--output", str(multi))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    preds = (multi / "predictions.jsonl").read_bytes()
    assert preds == (single / "predictions.jsonl").read_bytes()
    assert results(multi) == results(single)
    rec = json.loads((multi / "record.json").read_text())
    assert rec["execution"]["world_size"] == 2
    lines = [json.loads(ln) for ln in preds.decode().splitlines()]
    per_trial = Counter((ln["shots"], ln["trial"]) for ln in lines)
    assert per_trial == {(k, t): 41 for k in (0, 2) for t in (0, 1)}
    ids = Counter((ln["shots"], ln["trial"], ln["sample_id"]) for ln in lines)
    assert max(ids.values()) == 1  # no padding duplicates
    assert not (multi / "partial").exists()


def test_console_script_under_torchrun_resumes_a_single_process_run(tmp_path):
    """``torchrun --no-python flamingo-eval ...``; a partial 1-process run is finished by 2 ranks."""
    exe = shutil.which("flamingo-eval", path=str(Path(sys.executable).parent))
    assert exe is not None
    args = ["run", "easyvqa", "--model", "tiny", "--shots", "0", "--trials", "2", "--limit", "9"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main([*args, "--output", str(ref)]) == 0
    assert main([*args, "--output", str(run)]) == 0
    # Turn the finished run back into a partial one: trial 1 lost, trial 0 half done.
    from flamingo_eval.config_load import compose_config
    from flamingo_eval.results.store import config_hash

    cfg = compose_config("easyvqa", "tiny", ["run.shots=[0]", "run.trials=2", "run.limit=9"])
    part = run / "partial"
    part.mkdir()
    (part / "state.json").write_text(json.dumps({"config_hash": config_hash(cfg)}))
    lines = (run / "predictions.jsonl").read_text().splitlines()[:5]
    (part / "s0-t0.r0.jsonl").write_text("".join(json.dumps({"p": json.loads(ln)}) + "\n" for ln in lines))
    (run / "record.json").unlink()
    (run / "predictions.jsonl").unlink()
    out = torchrun("--no-python", exe, *args, "--output", str(run))
    assert out.returncode == 0, out.stderr[-3000:]
    assert (run / "predictions.jsonl").read_bytes() == (ref / "predictions.jsonl").read_bytes()
    assert results(run) == results(ref)


@pytest.mark.parametrize("env,expected", [({}, (0, 1)), ({"RANK": "1", "WORLD_SIZE": "3", "LOCAL_RANK": "1"}, (1, 3))])
def test_rank_from_env_and_sharding(env, expected):
    from flamingo_eval.distributed import from_env, shard

    d = from_env(env)
    assert (d.rank, d.world_size) == expected
    items = list(range(10))
    shards = [shard(items, from_env({"RANK": str(r), "WORLD_SIZE": "3"})) for r in range(3)]
    assert sorted(x for s in shards for x in s) == items and [len(s) for s in shards] == [4, 3, 3]
