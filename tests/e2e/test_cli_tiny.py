"""End to end through the CLI with the tiny model on real offline data (easy-vqa, VQAv2-format fixture)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flamingo_eval.cli import main


def run_cli(*args: str) -> int:
    return main(list(args))


@pytest.fixture(scope="module")
def easyvqa_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "easyvqa"
    rc = run_cli("run", "easyvqa", "--model", "tiny", "--shots", "0", "2", "--trials", "2", "--limit", "12",
                 "--output", str(out))
    assert rc == 0
    return out


def test_run_writes_record_and_predictions(easyvqa_run, capsys):
    rec = json.loads((easyvqa_run / "record.json").read_text())
    assert rec["benchmark"]["id"] == "easyvqa" and rec["benchmark"]["version"] == "1.0"
    assert rec["model"]["id"] == "tiny" and rec["model"]["fingerprint"].startswith("sha256:")
    assert rec["provenance"]["libraries"]["torch"] and "git_sha" in rec["provenance"]
    assert rec["provenance"]["torch_threads"] >= 1 and rec["provenance"]["cpu_model"]
    assert rec["provenance"]["gpu_model"] is None  # a CPU run
    assert rec["config"]["run"]["limit"] == 12
    assert [r["shots"] for r in rec["results"]] == [0, 2]
    for r in rec["results"]:
        assert r["seeds"] == [0, 1] and len(r["trials"]) == 2 and r["n"] == 12
        assert {"mean", "std", "std_ddof1"} <= set(r)
        assert all(0 <= t["value"] <= 100 for t in r["trials"])
        lo, hi = r["ci95"]  # the bootstrap over samples x trials, run.bootstrap (1000) resamples
        assert lo <= r["mean"] <= hi and r["ci95_resamples"] == 1000
    assert rec["throughput"]["samples_per_s"] > 0
    lines = [json.loads(ln) for ln in (easyvqa_run / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 2 * 2 * 12
    first = lines[0]
    assert {"sample_id", "demo_ids", "raw_output", "answer", "score", "prompt_hash", "shots", "trial"} <= set(first)
    two_shot = [ln for ln in lines if ln["shots"] == 2]
    assert all(len(ln["demo_ids"]) == 2 for ln in two_shot)
    assert all(len(ln["demo_ids"]) == 2 for ln in lines if ln["shots"] == 0)  # 0-shot: two text-only demos


def test_score_reproduces_the_records_numbers(easyvqa_run, capsys):
    """``score`` and the runner share metrics/stats.py: the same trial values, mean, std and ci95, bit for bit."""
    assert run_cli("score", "easyvqa", "--predictions", str(easyvqa_run)) == 0
    out = json.loads(capsys.readouterr().out)
    rec = json.loads((easyvqa_run / "record.json").read_text())
    for mine, theirs in zip(out["results"], rec["results"], strict=True):
        assert [t["value"] for t in mine["trials"]] == [t["value"] for t in theirs["trials"]]
        for key in ("mean", "std", "std_ddof1", "ci95", "ci95_resamples", "ci95_method"):
            assert mine[key] == theirs[key], key
    assert rec["results"][0]["ci95_method"] == "bootstrap: samples"


def test_rerunning_a_complete_run_loads_no_model(easyvqa_run, capsys, monkeypatch):
    import flamingo_eval.models.build as build

    def no_model(*args, **kwargs):
        raise AssertionError("a complete run must not load the model again")

    monkeypatch.setattr(build, "build_model", no_model)
    before = (easyvqa_run / "record.json").read_bytes()
    assert run_cli("run", "easyvqa", "--model", "tiny", "--shots", "0", "2", "--trials", "2", "--limit", "12",
                   "--output", str(easyvqa_run)) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (easyvqa_run / "record.json").read_bytes() == before


def test_score_reproduces_the_run(easyvqa_run, capsys):
    capsys.readouterr()
    assert run_cli("score", "easyvqa", "--predictions", str(easyvqa_run / "predictions.jsonl")) == 0
    scored = json.loads(capsys.readouterr().out)
    rec = json.loads((easyvqa_run / "record.json").read_text())
    for mine, theirs in zip(scored["results"], rec["results"]):
        assert mine["shots"] == theirs["shots"]
        assert [t["value"] for t in mine["trials"]] == pytest.approx([t["value"] for t in theirs["trials"]], abs=1e-9)


def test_demo_ids_do_not_depend_on_limit(tmp_path):
    from flamingo_eval.config_load import compose_config
    from flamingo_eval.runner import prepare
    from tests.trial_prompts import trial_prompts

    class Counter:
        max_context = 10**6

        @staticmethod
        def count_tokens(text: str) -> int:
            return len(text)

    def demos(limit):
        cfg = compose_config("easyvqa", "tiny", [f"run.limit={limit}"])
        return {p.demo_ids for p in trial_prompts(prepare(cfg), Counter(), 8, 0)[:50]}, \
            [p.demo_ids for p in trial_prompts(prepare(cfg), Counter(), 8, 0)[:50]]

    assert demos(50)[1] == demos(100)[1]


def test_eval_subsets_first_random_and_per_trial(tmp_path):
    from flamingo_eval.config_load import compose_config
    from flamingo_eval.runner import prepare

    every = [s.id for s in prepare(compose_config("easyvqa", "tiny", [])).eval_samples]
    ids = {}
    for subset in ("first", "random", "random_per_trial"):
        out = tmp_path / subset
        assert run_cli("run", "easyvqa", "--model", "tiny", "--shots", "0", "--seeds", "3", "4", "--limit", "5",
                       "--subset", subset, "--output", str(out)) == 0
        lines = [json.loads(ln) for ln in (out / "predictions.jsonl").read_text().splitlines()]
        ids[subset] = [[ln["sample_id"] for ln in lines if ln["seed"] == seed] for seed in (3, 4)]
        rec = json.loads((out / "record.json").read_text())
        assert rec["config"]["run"]["subset"] == subset and all(len(x) == 5 for x in ids[subset])
        for trial_ids in ids[subset]:  # split order is kept
            assert trial_ids == sorted(trial_ids, key=every.index)
    assert ids["first"] == [every[:5]] * 2
    assert ids["random"][0] == ids["random"][1] != every[:5]  # one random N (seeded by --seed) for all trials
    assert ids["random_per_trial"][0] != ids["random_per_trial"][1]  # each trial draws its own N


def test_vqav2_official_format_end_to_end(vqav2_root, tmp_path):
    out = tmp_path / "run"
    assert run_cli("run", "vqav2", "--model", "tiny", "--shots", "0", "4", "--data-root", str(vqav2_root),
                   "--output", str(out)) == 0
    rec = json.loads((out / "record.json").read_text())
    assert rec["benchmark"]["metric"] == "vqa_accuracy" and rec["results"][1]["n"] == 6
    lines = [json.loads(ln) for ln in (out / "predictions.jsonl").read_text().splitlines()]
    assert all(ln["references"][:4] == ["blue"] * 4 for ln in lines)  # joined by question_id, not position


def _err(capsys) -> str:
    return capsys.readouterr().err.strip()


def test_unknown_benchmark_lists_available(capsys):
    assert run_cli("run", "nope") == 2
    err = _err(capsys)
    assert "unknown benchmark 'nope'" in err and "easyvqa" in err and "\n" not in err


def test_malformed_override(capsys):
    assert run_cli("run", "easyvqa", "--model", "tiny", "run.limit=abc") == 2
    err = _err(capsys)
    assert "limit" in err and "\n" not in err
    assert run_cli("run", "easyvqa", "--model", "tiny", "run.nosuchkey=1") == 2
    assert "nosuchkey" in _err(capsys)
    assert run_cli("run", "easyvqa", "--model", "tiny", "justaword") == 2
    assert "KEY=VALUE" in _err(capsys)


def test_missing_data_points_to_data_check(tmp_path, capsys):
    assert run_cli("run", "vqav2", "--model", "tiny", "--data-root", str(tmp_path)) == 2
    err = _err(capsys)
    assert "data check" in err and "v2_OpenEnded_mscoco" in err
    assert run_cli("data", "check", "vqav2", "--data-root", str(tmp_path)) == 1
    assert "MISSING" in capsys.readouterr().out


def test_unreadable_image_names_the_file(vqav2_root, tmp_path, capsys):
    bad = next((vqav2_root / "vqav2" / "val2014").glob("*.jpg"))
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert run_cli("run", "vqav2", "--model", "tiny", "--shots", "0", "--data-root", str(vqav2_root),
                   "--output", str(tmp_path / "r")) == 2
    assert bad.name in _err(capsys)
    assert run_cli("run", "vqav2", "--model", "tiny", "--shots", "0", "--data-root", str(vqav2_root),
                   "--output", str(tmp_path / "s"), "--on-bad-sample", "skip") == 0
    rec = json.loads((tmp_path / "s" / "record.json").read_text())
    assert rec["results"][0]["trials"][0]["skipped"] == 1 and rec["results"][0]["trials"][0]["n"] == 5


def test_console_script_help_and_list():
    exe = Path(sys.executable).parent / "flamingo-eval"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "run" in out.stdout and "leaderboard" in out.stdout
    out = subprocess.run([str(exe), "list"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "easyvqa" in out.stdout and "vqav2" in out.stdout
