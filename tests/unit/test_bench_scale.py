"""tools/synth_vqav2.py writes what the vqav2 card reads; bench_scale's writer comparison is byte-exact."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tool(name: str):  # noqa: ANN202
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(ROOT / "tools"))


def test_synthetic_split_loads_through_the_vqav2_card_and_is_written_once(tmp_path):
    from flamingo_eval.config import compose_config
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
