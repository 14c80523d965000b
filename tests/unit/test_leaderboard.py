"""Leaderboard aggregation and rendering on synthetic run records."""

from __future__ import annotations

import argparse
import io
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flamingo_eval.commands import leaderboard as cmd
from flamingo_eval.errors import UserError
from flamingo_eval.results import (
    build_leaderboard,
    latex_escape,
    load_record,
    load_records,
    render_leaderboard,
    write_json_atomic,
)
from flamingo_eval.results.leaderboard import OLD_CI_METHOD


def write_record(root: Path, run: str, model: str, bench: str, results: dict[int, dict[int, float]], *,
                 created: str = "2026-11-24T18:00:00+00:00", fingerprint: str = "sha256:aaaa1111bbbb",
                 version: str = "1.0", metric: str = "exact_match", config: dict | None = None,
                 status: str | None = None) -> Path:
    """A minimal valid record: ``results`` maps shots -> {seed: value}."""
    entries = []
    for shots, trials in results.items():
        vals = list(trials.values())
        entries.append({
            "shots": shots, "sampler": "random", "n": 100, "seeds": list(trials),
            "trials": [{"seed": s, "value": v, "extras": {}, "n": 100, "skipped": 0, "dropped_demos": 0,
                        "seconds": 1.0} for s, v in trials.items()],
            "mean": float(np.mean(vals)), "std": float(np.std(vals)),
            "std_ddof1": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
            "ci95": [float(np.mean(vals)) - 3.0, float(np.mean(vals)) + 4.5], "ci95_resamples": 1000,
        })
    rec = {"schema_version": 1, "run_id": run, "created": created,
           "benchmark": {"id": bench, "version": version, "task": "vqa", "split": "test", "demo_split": "train",
                         "metric": metric, "metric_args": {}, "corpus_level": False},
           "model": {"id": model, "name": model, "fingerprint": fingerprint, "precision": "fp32"},
           "config": config or {}, "provenance": {}, "results": entries, "throughput": {}}
    if status is not None:
        rec["status"] = status
    write_json_atomic(root / run / "record.json", rec)
    return root / run


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    write_record(root, "r1", "alpha", "easyvqa", {0: {0: 50.0, 1: 52.0, 2: 54.0}, 4: {0: 60.0, 1: 62.0, 2: 64.0}},
                 fingerprint="sha256:aaaa")
    write_record(root, "r2", "beta", "easyvqa", {0: {0: 55.0, 1: 55.0, 2: 58.0}, 4: {0: 58.0, 1: 59.0, 2: 63.0}},
                 fingerprint="sha256:bbbb")
    write_record(root, "r3", "alpha", "okvqa", {0: {0: 30.0, 1: 31.0}, 8: {0: 40.0, 1: 44.0}},
                 fingerprint="sha256:aaaa")
    write_record(root, "r4", "beta", "okvqa", {0: {0: 33.0, 1: 35.0}}, fingerprint="sha256:bbbb")
    return root


def _cell(lb, model: str, bench: str, shots: int) -> dict:
    c = lb.cells
    row = c[(c["model"] == model) & (c["benchmark"] == bench) & (c["shots"] == shots)]
    assert len(row) == 1
    return row.iloc[0].to_dict()


def test_means_and_stds_match_hand_computation(results_dir: Path) -> None:
    lb = build_leaderboard(load_records(results_dir))
    assert lb.models == ["alpha", "beta"]
    assert lb.columns == [("easyvqa", "0-shot"), ("easyvqa", "4-shot"), ("okvqa", "0-shot"), ("okvqa", "8-shot")]
    a4 = _cell(lb, "alpha", "easyvqa", 4)
    assert a4["mean"] == pytest.approx(62.0)
    assert a4["std"] == pytest.approx((8 / 3) ** 0.5)  # population std of 60, 62, 64
    b0 = _cell(lb, "beta", "easyvqa", 0)
    assert b0["mean"] == pytest.approx(56.0) and b0["std"] == pytest.approx(2 ** 0.5)
    assert _cell(build_leaderboard(load_records(results_dir), ddof=1), "alpha", "easyvqa", 4)["std"] == 2.0
    md = render_leaderboard(lb, "md")
    assert "| alpha | 52.0 ± 1.6 | **62.0** ± 1.6 | 30.5 ± 0.5 | 42.0 ± 2.0 |" in md
    assert "| beta | **56.0** ± 1.4 | 60.0 ± 2.2 | **34.0** ± 1.0 | — |" in md
    assert "ddof=0" in md and "easyvqa: exact_match" in md


def test_ci_and_unit_scale(results_dir: Path) -> None:
    lb = build_leaderboard(load_records(results_dir))
    md = render_leaderboard(lb, "md", ci=True, scale="unit")
    # the record's ci95 (the run's bootstrap), never recomputed from the trial values: 62 -> [59, 66.5]
    assert "**0.620** [0.590, 0.665]" in md
    assert "| beta | **0.560** [0.530, 0.605] | 0.600 [0.570, 0.645] | **0.340** [0.310, 0.385] | — |" in md
    tex = render_leaderboard(lb, "latex", ci=True)
    assert r"\textbf{62.0}\,{\scriptsize [59.0, 66.5]}" in tex
    # the table note names what the intervals resample (these records predate ci95_method)
    html = render_leaderboard(lb, "html", ci=True)
    for text in (md, tex, html):
        assert "percentile bootstrap of the metric" in text and OLD_CI_METHOD in text
    with pytest.raises(UserError):
        render_leaderboard(lb, "md", scale="permille")


def test_ci_note_names_the_recorded_method(tmp_path: Path) -> None:
    run = write_record(tmp_path / "res", "r", "m", "easyvqa", {4: {0: 60.0, 1: 64.0}})
    rec = json.loads((run / "record.json").read_text())
    rec["results"][0]["ci95_method"] = "bootstrap: samples x trials"
    write_json_atomic(run / "record.json", rec)
    lb = build_leaderboard(load_records(tmp_path / "res"))
    for fmt in ("md", "latex", "html"):
        text = render_leaderboard(lb, fmt, ci=True)
        assert "method: bootstrap: samples x trials)" in text and OLD_CI_METHOD not in text
    assert "bootstrap" not in render_leaderboard(lb, "md")  # mean ± std: no interval, no method


def test_merge_by_seed_newest_wins_and_is_noted(tmp_path: Path) -> None:
    root = tmp_path / "res"
    write_record(root, "old", "m", "easyvqa", {4: {0: 10.0, 1: 20.0}}, created="2026-01-01T00:00:00+00:00")
    write_record(root, "new", "m", "easyvqa", {4: {1: 30.0, 2: 50.0}}, created="2026-02-01T00:00:00+00:00")
    lb = build_leaderboard(load_records(root))
    cell = _cell(lb, "m", "easyvqa", 4)
    assert cell["seeds"] == [0, 1, 2] and cell["mean"] == pytest.approx(30.0)  # (10 + 30 + 50) / 3
    notes = " ".join(lb.notes)
    assert "supersedes seed 1 of run old" in notes and "merged from 2 runs" in notes
    assert math.isnan(cell["ci_lo"]) and "m / easyvqa 4-shot: no 95% CI shown" in notes  # never invented
    assert "| m | 30.0 |" in render_leaderboard(lb, "md", ci=True)


def test_same_name_different_checkpoints_are_separate_rows(tmp_path: Path) -> None:
    root = tmp_path / "res"
    write_record(root, "a", "m", "easyvqa", {0: {0: 10.0}}, fingerprint="sha256:1234567890ab")
    write_record(root, "b", "m", "easyvqa", {0: {0: 20.0}}, fingerprint="sha256:ba0987654321")
    lb = build_leaderboard(load_records(root))
    assert lb.models == ["m (12345678)", "m (ba098765)"]
    md = render_leaderboard(lb, "md")
    assert "| m (12345678) | 10.0 |" in md and "| m (ba098765) | **20.0** |" in md


def test_latex_escapes_and_booktabs(tmp_path: Path) -> None:
    root = tmp_path / "res"
    write_record(root, "a", "my_model 100% R&D", "vqa_v2", {0: {0: 10.0, 1: 12.0}, 4: {0: 20.0}})
    write_record(root, "b", "other#2", "vqa_v2", {0: {0: 11.0}})
    tex = render_leaderboard(build_leaderboard(load_records(root)), "latex")
    assert r"my\_model 100\% R\&D" in tex and r"other\#2" in tex and r"vqa\_v2" in tex
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"\textbf{11.0}" in tex and " & --" in tex
    assert latex_escape(r"a\b~c^d{e}$") == r"a\textbackslash{}b\textasciitilde{}c\textasciicircum{}d\{e\}\$"


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
@pytest.mark.parametrize("ci", [False, True])
def test_latex_compiles(tmp_path: Path, ci: bool) -> None:
    root = tmp_path / "res"
    write_record(root, "a", "my_model 100% R&D", "vqa_v2", {0: {0: 10.0, 1: 12.0}, 4: {0: 20.0}})
    write_record(root, "b", "other#2~x", "vqa_v2", {0: {0: 11.0}})
    tex = render_leaderboard(build_leaderboard(load_records(root)), "latex", ci=ci)
    doc = "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + tex + "\\end{document}\n"
    (tmp_path / "t.tex").write_text(doc)
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 0


def test_csv_and_html(results_dir: Path) -> None:
    lb = build_leaderboard(load_records(results_dir))
    df = pd.read_csv(io.StringIO(render_leaderboard(lb, "csv")))
    assert list(df["model"]) == ["alpha", "beta"]
    assert df.loc[0, "easyvqa 4-shot mean"] == pytest.approx(62.0)
    assert pd.isna(df.loc[1, "okvqa 8-shot mean"])
    page = render_leaderboard(lb, "html")
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "<strong>62.0</strong> ± 1.6" in page and 'colspan="2">easyvqa' in page
    assert "http" not in page and "<script" not in page and "<link" not in page


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_writes_default_leaderboard(results_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(results_dir.parent)
    assert _cli(["leaderboard"]) == 0
    text = Path("results/LEADERBOARD.md").read_text()
    assert text.startswith("# Leaderboard") and "**62.0**" in text
    assert _cli(["leaderboard", "--format", "latex", "--output", "out/lb.tex"]) == 0
    assert r"\begin{tabular}" in Path("out/lb.tex").read_text()


def test_invalid_record_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_record(tmp_path / "res", "bad", "m", "easyvqa", {0: {0: 1.0}})
    rec = json.loads((run / "record.json").read_text())
    rec["results"][0]["trials"][0]["value"] = "61.5"
    (run / "record.json").write_text(json.dumps(rec))
    with pytest.raises(UserError, match=r"record\.json: field 'results\[0\]\.trials\[0\]\.value': expected"):
        load_record(run)
    assert _cli(["leaderboard", "--results", str(tmp_path / "res"), "--output", "-"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "results[0].trials[0].value" in err
    rec["schema_version"] = 99
    (run / "record.json").write_text(json.dumps(rec))
    with pytest.raises(UserError, match="schema_version"):
        load_record(run / "record.json")


def run_config(**run: object) -> dict:
    """A record config: the run section as the CLI writes it, plus sections that stay the same."""
    base = {"shots": [0, 4], "trials": 2, "seeds": None, "seed": 0, "limit": 200, "subset": "first",
            "output": "runs/x", "batch_size": None, "data_root": "/data", "sampler": "random"}
    return {"run": {**base, **run}, "benchmarks": {"id": "easyvqa", "metric": {"name": "exact_match"}},
            "model": {"name": "m", "precision": "fp32", "batch_size": 8}}


def test_runs_of_different_limits_are_never_merged(tmp_path: Path) -> None:
    """A newer 40-sample smoke run neither replaces nor joins seed 0 of the 200-sample run: its own row."""
    root = tmp_path / "res"
    write_record(root, "full", "m", "easyvqa", {0: {0: 29.0, 1: 27.5}}, config=run_config(limit=200))
    write_record(root, "smoke", "m", "easyvqa", {0: {0: 40.0}}, config=run_config(limit=40, trials=1),
                 created="2026-12-01T00:00:00+00:00")
    lb = build_leaderboard(load_records(root))
    assert lb.models == ["m [run.limit=200]", "m [run.limit=40]"]
    assert _cell(lb, "m [run.limit=200]", "easyvqa", 0)["mean"] == pytest.approx(28.25)
    assert _cell(lb, "m [run.limit=40]", "easyvqa", 0)["mean"] == pytest.approx(40.0)
    notes = " ".join(lb.notes)
    assert "never merged" in notes and "supersedes" not in notes and "merged from" not in notes
    assert "| m [run.limit=200] | 28.2 ± 0.8 |" in render_leaderboard(lb, "md")


def test_runs_differing_only_in_seeds_and_run_only_fields_are_merged(tmp_path: Path) -> None:
    root = tmp_path / "res"
    write_record(root, "a", "m", "easyvqa", {0: {0: 10.0}}, config=run_config(seeds=[0], seed=0))
    other = run_config(seeds=[1, 2], seed=1, shots=[0], output="elsewhere", batch_size=3, data_root="/mnt/d")
    other["model"]["batch_size"] = 1
    write_record(root, "b", "m", "easyvqa", {0: {1: 20.0, 2: 30.0}}, config=other)
    lb = build_leaderboard(load_records(root))
    assert lb.models == ["m"] and _cell(lb, "m", "easyvqa", 0)["seeds"] == [0, 1, 2]
    # With a random eval subset, run.seed picks the samples: such runs are not pooled.
    write_record(root, "c", "m", "easyvqa", {0: {3: 50.0}}, config=run_config(subset="random", seed=3))
    write_record(root, "d", "m", "easyvqa", {0: {4: 60.0}}, config=run_config(subset="random", seed=4))
    models = build_leaderboard(load_records(root)).models
    assert len(models) == 3 and "m [run.seed=3, run.subset=\"random\"]" in models


def test_unfinished_runs_are_marked(tmp_path: Path) -> None:
    root = tmp_path / "res"
    write_record(root, "done", "m", "easyvqa", {0: {0: 10.0, 1: 12.0}}, status="complete")
    write_record(root, "busy", "m", "easyvqa", {4: {0: 20.0}}, status="running")
    write_record(root, "old", "n", "easyvqa", {0: {0: 11.0}})  # written before records had a status
    lb = build_leaderboard(load_records(root))
    md = render_leaderboard(lb, "md")
    assert "| m | **11.0** ± 1.0 | 20.0* |" in md and "| n | **11.0** | — |" in md
    assert "*: includes trials of unfinished runs (status: running), whose values may still change: busy." in md
    assert r"20.0*" in render_leaderboard(lb, "latex") and "<td>20.0*</td>" in render_leaderboard(lb, "html")
    df = pd.read_csv(io.StringIO(render_leaderboard(lb, "csv")))
    assert list(df["easyvqa 4-shot unfinished"].fillna(-1)) == [1, -1]
    assert list(df["easyvqa 0-shot unfinished"]) == [0, 0]
