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
    from flamingo_eval.config_load import compose_config
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


# -- a kill at each named phase (acceptance of issue 11, section 2) --------------------------------------
# FLAMINGO_EVAL_CRASH_AT (flamingo_eval/faults.py, test-only) makes the run SIGKILL itself at a named
# point. The run uses RICES (a random 64 px ViT-S-32, no download) so it has a demo-pool encode to kill.
N_VAL, BATCH = 6, 2


def phase_args(root: Path, out: Path, cache: Path) -> list[str]:
    return ["run", "vqav2", "--model", "tiny", "--shots", "0", "2", "--trials", "1", "--data-root", str(root),
            "--sampler", "rices", "--batch-size", str(BATCH), "--output", str(out), "run.rices_model=ViT-S-32",
            "run.rices_pretrained=null", "run.rices_image_size=64", "run.rices_batch_size=4",
            f"run.rices_cache_dir={cache}"]


def killed_at(phase: str, args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "flamingo_eval", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "CI": "true", "FLAMINGO_EVAL_CRASH_AT": phase})
    assert proc.returncode == -signal.SIGKILL, f"{phase}: {proc.stderr}"


@pytest.fixture(scope="module")
def phase_ref(tmp_path_factory) -> tuple[Path, Path]:
    """(data root, reference run): 12 train / 6 val VQAv2-format questions, run once without a kill."""
    from tests.conftest import make_vqav2

    base = tmp_path_factory.mktemp("phases")
    root = make_vqav2(base / "data", n_train=12, n_val=N_VAL)
    assert main(phase_args(root, base / "ref", base / "warm-cache")) == 0
    return root, base / "ref"


def finished_like(run: Path, ref: Path) -> None:
    assert (run / "predictions.jsonl").read_bytes() == (ref / "predictions.jsonl").read_bytes()
    assert results(run) == results(ref)
    assert sorted(p.name for p in run.iterdir()) == ["predictions.jsonl", "record.json"]  # no tmp, lock, partial/


def test_crash_at_start_up_and_in_the_demo_pool_encode_then_resume(phase_ref, tmp_path, capsys, monkeypatch):
    """A full disk while writing the run state, a SIGKILL at start-up, one in the RICES demo-pool encode:
    each time the same command is run again, and it ends byte-identical to the uninterrupted run."""
    import errno

    root, ref = phase_ref
    run = tmp_path / "run"
    args = phase_args(root, run, tmp_path / "cold-cache")  # the RICES cache is run-only (not in the hash)
    (run / "partial").mkdir(parents=True)  # what an older version left when killed at start-up: ours
    real_fsync = os.fsync

    def full_disk(fd: int) -> None:  # the first write under the run directory is partial/state.json
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(run)):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "no space left on device" in err and "\n" not in err
    monkeypatch.setattr(os, "fsync", real_fsync)

    killed_at("startup", args)  # between making the directories and writing the run state
    assert any(p.name.startswith(".partial-") for p in run.iterdir()) and not (run / "partial").exists()
    killed_at("demo_pool", args)  # after the first batch of the RICES encode (nothing cached yet)
    assert (run / "partial" / "state.json").is_file() and not list((run / "partial").glob("*.jsonl"))
    assert main(args) == 0
    finished_like(run, ref)


def test_crash_mid_trial_and_in_the_final_write_then_resume(phase_ref, tmp_path):
    """SIGKILL after a batch was appended (mid-run), then after the complete record was written; the same
    command resumes, and the throughput counts only what the last process evaluated."""
    root, ref = phase_ref
    run = tmp_path / "run"
    args = phase_args(root, run, tmp_path / "cache")
    killed_at("batch:3", args)  # the 0-shot trial's last batch is on disk, not yet scored
    assert sum(p.read_text().count("\n") for p in (run / "partial").glob("*.r0.jsonl")) == N_VAL
    assert not (run / "record.json").exists()
    (run / ".record.json.k1ll3d.tmp").write_text("{")  # what a kill inside an atomic write leaves
    killed_at("final", args)  # record.json says complete, partial/ not yet removed
    assert json.loads((run / "record.json").read_text())["status"] == "complete" and (run / "partial").is_dir()
    assert main(args) == 0  # loads no model: only tidies
    finished_like(run, ref)
    rec = json.loads((run / "record.json").read_text())
    assert rec["throughput"]["samples"] == N_VAL  # the 2-shot trial; the 0-shot one was evaluated before
    assert rec["execution"]["resumes"] == 1


def test_crash_between_the_predictions_append_and_its_index_then_resume(phase_ref, tmp_path):
    """SIGKILL after the 0-shot trial was appended to predictions.jsonl but before its index entry: the
    resumed run cuts those bytes, appends the trial once, and ends byte-identical."""
    root, ref = phase_ref
    run = tmp_path / "run"
    args = phase_args(root, run, tmp_path / "cache")
    killed_at("predictions", args)
    assert (run / "predictions.jsonl").read_text().count("\n") == N_VAL
    assert not (run / "partial" / "predictions.index.json").exists()
    assert main(args) == 0
    finished_like(run, ref)


def test_second_run_on_the_same_output_is_refused(tmp_path, capsys):
    """A real first run holds the lock; the second is refused with one line (rc 2) and computes nothing."""
    from tests.conftest import make_vqav2

    root = make_vqav2(tmp_path / "data", n_train=4, n_val=300)  # the first run is busy for a while
    args = ["run", "vqav2", "--model", "tiny", "--shots", "0", "--trials", "1", "--data-root", str(root),
            "run.zero_shot_text_demos=0", "--output", str(tmp_path / "run")]
    first = subprocess.Popen([sys.executable, "-m", "flamingo_eval", *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env={**os.environ, "CI": "true"})
    try:
        deadline = time.monotonic() + 120
        while first.poll() is None and not (tmp_path / "run" / "partial").is_dir() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert "in use by another flamingo-eval run" in err and f"pid {first.pid}" in err and "\n" not in err
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    from flamingo_eval.results.lock import OutputLock

    lock = OutputLock(tmp_path / "run")
    lock.acquire()  # the kernel released the killed holder's lock
    lock.release()
