"""Run set-up pieces: CPU thread defaults (affinity, cgroup quotas, OMP, torchrun), `~` in overrides, the
output-directory lock, progress lines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flamingo_eval.config_load import compose_config, quote_home
from flamingo_eval.distributed import available_cpus, default_threads
from flamingo_eval.errors import UserError
from flamingo_eval.results.lock import LOCK_FILE, OutputLock

CPUS = len(os.sched_getaffinity(0))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_of_the_own_cgroup_and_its_parents(tmp_path):
    _write(tmp_path / "cpu.max", "max 100000\n")
    _write(tmp_path / "job" / "cpu.max", "150000 100000\n")  # 1.5 CPUs -> 2
    _write(tmp_path / "job" / "step" / "cpu.max", "max 100000\n")
    assert available_cpus(tmp_path, "0::/job/step\n") == min(CPUS, 2)
    _write(tmp_path / "job" / "cpu.max", "50000 100000\n")  # half a CPU still runs one thread
    assert available_cpus(tmp_path, "0::/job/step\n") == 1
    assert available_cpus(tmp_path / "nothing", "0::/\n") == CPUS  # no cgroup files: the affinity mask


def test_cgroup_v1_quota(tmp_path):
    _write(tmp_path / "cpu" / "cpu.cfs_quota_us", "100000\n")
    _write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert available_cpus(tmp_path, "1:cpu:/\n") == 1
    _write(tmp_path / "cpu" / "cpu.cfs_quota_us", "-1\n")  # unlimited
    assert available_cpus(tmp_path, "1:cpu:/\n") == CPUS


@pytest.mark.parametrize("env,cpus,expected", [
    ({}, 16, 16),
    ({"LOCAL_WORLD_SIZE": "4"}, 16, 4),  # torchrun: each process gets its share of the node
    ({"LOCAL_WORLD_SIZE": "8"}, 4, 1),  # never below one
    ({"OMP_NUM_THREADS": "3", "LOCAL_WORLD_SIZE": "4"}, 16, 3),  # per-process by definition: taken as is
    ({"OMP_NUM_THREADS": "garbage"}, 6, 6),
])
def test_default_threads(env, cpus, expected):
    assert default_threads(env, cpus=cpus) == expected


@pytest.mark.parametrize("given,hydra", [
    ("model.checkpoint=~/ckpt/x.pt", "model.checkpoint='~/ckpt/x.pt'"),
    ("model.checkpoint='~/a'", "model.checkpoint='~/a'"),  # already quoted
    ("run.limit=3", "run.limit=3"),
    ("run.shots=[0,4]", "run.shots=[0,4]"),
])
def test_quote_home(given, hydra):
    assert quote_home(given) == hydra


def test_tilde_is_expanded_in_path_fields(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = compose_config("easyvqa", "tiny", ["run.data_root=~/data", "model.latent_cache_dir=~/lat",
                                             "run.rices_cache_dir=~/r", "benchmarks.files.test_images=~/imgs"])
    assert cfg.run.data_root == str(tmp_path / "data") and cfg.model.latent_cache_dir == str(tmp_path / "lat")
    assert cfg.run.rices_cache_dir == str(tmp_path / "r")
    assert cfg.benchmarks.files["test_images"] == str(tmp_path / "imgs")
    assert cfg.benchmarks.generation.stop == ["<|endofchunk|>"]  # non-path strings are untouched


def test_lock_refuses_a_second_holder_and_leaves_nothing(tmp_path):
    out = tmp_path / "run"
    first = OutputLock(out)
    first.acquire()
    assert (out / LOCK_FILE).read_text().startswith(f"pid {os.getpid()} on ")
    with pytest.raises(UserError, match=rf"in use by another flamingo-eval run \(pid {os.getpid()} on .*\)"):
        OutputLock(out).acquire()  # flock locks per open file: a second open in one process conflicts too
    first.release()
    assert not out.exists()  # it made the directory and nothing else was written: no empty dir left
    out.mkdir()
    (out / "keep.txt").write_text("x")
    second = OutputLock(out)
    second.acquire()
    second.release()
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_lock_on_a_file_path_is_one_line(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="is a file, not a directory"):
        OutputLock(tmp_path / "f").acquire()


def test_plain_progress_reports_the_first_batch_at_once(capsys):
    from flamingo_eval.display import PlainReporter

    rep = PlainReporter(every=3600)
    rep.start(10, "bench · model")
    rep.advance(4, resumed=True)
    rep.advance(2)
    rep.advance(2)  # within `every`: silent
    rep.advance(2)  # the end: always
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("bench · model: 10 samples")
    assert "4/10 already done by an earlier run" in lines[1]
    assert lines[2].split()[0] == "6/10" and lines[3].split()[0] == "10/10" and len(lines) == 4
