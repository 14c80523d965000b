"""Kill a run with SIGKILL at random points, resume it, and get exactly the uninterrupted run's files.

The kill-and-resume cycle is done 5 times in this test (5 fresh run directories, 2 kills each at
random progress points plus a random delay, so kills land in model calls, part-file appends, scoring
and record writes), each compared byte for byte with one uninterrupted run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from flamingo_eval.cli import main

ARGS = ["run", "easyvqa", "--model", "tiny", "--shots", "0", "2", "--trials", "2", "--limit", "64"]
TOTAL = 2 * 2 * 64  # part-file entries of a finished run
REPEATS = 5


def results(run: Path) -> list[dict[str, Any]]:
    """The record's results without timing fields."""
    rec = json.loads((run / "record.json").read_text())
    assert rec["status"] == "complete"
    out = []
    for entry in rec["results"]:
        trials = [{k: v for k, v in t.items() if k != "seconds"} for t in entry["trials"]]
        out.append({**entry, "trials": trials})
    return out


def entries_written(run: Path) -> int:
    part = run / "partial"
    n = 0
    for p in part.glob("*.r*.jsonl") if part.is_dir() else []:
        try:
            n += p.read_bytes().count(b"\n")
        except FileNotFoundError:
            pass
    return n


def start(run: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "flamingo_eval", *ARGS, "--output", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "CI": "true"})


def kill_at(proc: subprocess.Popen[bytes], run: Path, target: int, delay: float) -> bool:
    """SIGKILL once ``target`` entries are on disk (plus ``delay`` s); False if the run finished first."""
    deadline = time.monotonic() + 60
    while proc.poll() is None and entries_written(run) < target and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return True


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ref") / "run"
    assert main([*ARGS, "--output", str(run)]) == 0
    return run


def test_sigkill_and_resume_is_exact(reference, tmp_path):
    ref_preds = (reference / "predictions.jsonl").read_bytes()
    ref_results = results(reference)
    assert ref_preds.count(b"\n") == TOTAL
    for rep in range(REPEATS):
        rng = random.Random(1000 + rep)
        run = tmp_path / f"rep{rep}"
        log = []
        for _ in range(2):
            done = entries_written(run)
            target = done + rng.randrange(0, max(TOTAL - 32 - done, 1))  # before the last batch: not missed
            delay = rng.uniform(0.0, 0.1)
            proc = start(run)
            killed = kill_at(proc, run, target, delay)
            log.append((target, round(delay, 3), killed, entries_written(run)))
            if not killed:
                assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
        proc = start(run)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"kills {log}: {err.decode()}"
        assert b"Traceback" not in err
        assert (run / "predictions.jsonl").read_bytes() == ref_preds, f"repeat {rep}, kills {log}"
        assert results(run) == ref_results, f"repeat {rep}, kills {log}"
        assert not (run / "partial").exists()


def test_torn_last_line_is_ignored_and_repaired(reference, tmp_path):
    """A write cut half-way (power loss, SIGKILL inside write) leaves a partial line: it is redone."""
    run = tmp_path / "torn"
    part = run / "partial"
    assert main([*ARGS[:-1], "4", "--shots", "0", "--trials", "1", "--output", str(run)]) == 0
    full = (run / "predictions.jsonl").read_bytes()
    # Rebuild the partial state of that run with a torn tail and resume it.
    from flamingo_eval.config import compose_config
    from flamingo_eval.results.store import config_hash

    cfg = compose_config("easyvqa", "tiny", ["run.limit=4", "run.shots=[0]", "run.trials=1"])
    (run / "record.json").unlink()
    (run / "predictions.jsonl").unlink()
    part.mkdir()
    (part / "state.json").write_text(json.dumps({"config_hash": config_hash(cfg)}))
    lines = [json.loads(ln) for ln in full.decode().splitlines()]
    body = "".join(json.dumps({"p": {**ln, "score": None}}) + "\n" for ln in lines[:2])
    (part / "s0-t0.r0.jsonl").write_text(body + json.dumps({"p": lines[2]})[:25])
    assert main([*ARGS[:-1], "4", "--shots", "0", "--trials", "1", "--output", str(run)]) == 0
    assert (run / "predictions.jsonl").read_bytes() == full
