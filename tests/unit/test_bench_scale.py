"""tools/synth_vqav2.py writes what the vqav2 card reads; bench_scale's writer comparison is byte-exact; the
--kill-resume watcher counts part-file lines and its table computes the overheads."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures_builders import load_tool as _tool

ROOT = Path(__file__).resolve().parents[2]


def test_synthetic_split_loads_through_the_vqav2_card_and_is_written_once(tmp_path):
    from flamingo_eval.config_load import compose_config
    from flamingo_eval.task import prepare

    synth = _tool("synth_vqav2")
    sizes = {"train": (30, 7), "val": (20, 5)}
    root = synth.generate(tmp_path, sizes)
    stamp = (root / "vqav2" / ".complete").stat().st_mtime_ns
    cfg = compose_config("vqav2", "tiny", [f"run.data_root={root}", "run.shots=[4]"])
    task = prepare(cfg)
    assert (len(task.eval_samples), len(task.demo_samples)) == (20, 30)
    assert len({s.media[0] for s in task.eval_samples}) == 5 and all(Path(s.media[0]).is_file()
                                                                    for s in task.eval_samples)
    assert all(len(s.references) == 10 for s in task.demo_samples)
    synth.generate(tmp_path, sizes)  # cached: nothing rewritten
    assert (root / "vqav2" / ".complete").stat().st_mtime_ns == stamp


def test_writer_comparison_is_byte_exact(tmp_path):
    bench = _tool("bench_scale")
    sample = tmp_path / "p.jsonl"
    sample.write_text("".join(json.dumps({"sample_id": str(i), "answer": "ü"}, ensure_ascii=False) + "\n"
                              for i in range(7)), encoding="utf-8")
    r = bench.writer_cost(sample, 50, 4, tmp_path / "w")
    assert r["writer_identical"] and r["writer_mb"] > 0


def test_plan_only_table_has_the_planning_rows_only():
    bench = _tool("bench_scale")
    plan = {"eval": 214354, "load_s": 12.0, "demos_s": 25.0, "peak_rss_mb": 1661.0,
            "prompt_us_per_sample": {"0": 100.0}, "prompt_s_extrapolated": 1000.0}
    md = bench.table({"args": {"shots": "[0, 4]", "trials": "3", "fraction": "0.1"}, "plan": plan,
                      "load_start": [1.5], "load_end": [1.9], "cpus": 2})
    assert "| planning = load + demo choice | 37.0 s | <= 60 s |" in md and "stub run" not in md
    assert "demo choice, 214,354 questions x 6 trials" in md and "1.5 at start" in md


def test_kill_watch_counts_part_file_lines_incrementally(tmp_path):
    bench = _tool("scale_resume")
    part = tmp_path / "partial"
    part.mkdir()
    (part / "s0-t0.scored.jsonl").write_text("{}\n{}\n")  # not a part file: never counted
    (part / "s0-t0.r0.jsonl").write_text("{}\n{}\n{")  # a line being written is not done yet
    seen: dict = {}
    assert bench.lines_on_disk(part, seen) == 2
    with open(part / "s0-t0.r0.jsonl", "a") as f:
        f.write("}\n{}\n")
    (part / "s4-t0.r1.jsonl").write_text("{}\n")
    assert bench.lines_on_disk(part, seen) == 5 == bench.lines_on_disk(part, {})


def test_kill_resume_table_overheads():
    bench = _tool("scale_resume")
    run = {"eval": 1000, "eval_s": 100.0, "eval_cpu_s": 80.0, "half_eval_s": 49.0, "half_cpu_s": 39.0,
           "wall_s": 120.0, "part_s": 1.0, "save_s": 0.5, "resume_reads_s": 0.0, "model_calls": 16,
           "phases": {"data": 30.0}, "peak_rss_mb": 900.0, "load_before": 1.0, "load_after": 1.2}
    r = {"args": {"shots": "[0]", "trials": "1"}, "cpus": 2, "run": run, "resume_identical": True,
         "scores_identical": True, "predictions_mb": 0.3,
         "kill": {**run, "eval_s": 51.0, "eval_cpu_s": 40.0, "wall_s": 60.0, "lines_at_kill": 502},
         "resume": {**run, "eval_s": 52.0, "eval_cpu_s": 41.6, "wall_s": 75.0, "resume_reads_s": 0.4,
                    "model_calls": 8}}
    md = bench.kill_table(r)
    assert "| 502 / 1,000 questions on disk (50.2%) |" in md and "1.00 + 0.50 s = 1.5% | <= 2 % |" in md
    assert "+3.0 s (+3.0%)" in md and "+1.6 s (+2.0%)" in md and "+15.0 s (+12.5% of 120.0 s)" in md
    assert "| 16 / 8 |" in md and "0.40 s (0.4%)" in md
