"""Shot-scaling plots from synthetic run records."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer

from flamingo_eval.commands import plot as cmd
from flamingo_eval.errors import UserError
from flamingo_eval.results import build_leaderboard, load_records, plot_shot_scaling, write_json_atomic

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_record(root: Path, run: str, model: str, bench: str, results: dict[int, list[float]]) -> None:
    rec = {"schema_version": 1, "run_id": run, "created": "2026-11-24T18:00:00+00:00",
           "benchmark": {"id": bench, "version": "1.0", "split": "test", "demo_split": "train",
                         "metric": "exact_match", "metric_args": {}},
           "model": {"id": model, "name": model, "fingerprint": f"sha256:{model}"},
           "results": [{"shots": k, "sampler": "random",
                        "trials": [{"seed": s, "value": v} for s, v in enumerate(vals)],
                        "mean": sum(vals) / len(vals)} for k, vals in results.items()]}
    write_json_atomic(root / run / "record.json", rec)


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    for i, model in enumerate(("alpha", "beta", "gamma")):
        write_record(root, f"{model}-vqa", model, "easyvqa",
                     {0: [40.0 + i, 42.0 + i], 4: [50.0 + i, 51.0 + i], 8: [55.0 + i, 57.0 + i]})
    write_record(root, "alpha-cap", "alpha", "captions", {0: [80.0], 32: [95.0]})
    return root


def test_one_errorbar_line_per_model(results_dir: Path) -> None:
    fig = plot_shot_scaling(build_leaderboard(load_records(results_dir)))
    axes = {ax.get_title(): ax for ax in fig.axes}
    assert set(axes) == {"captions", "easyvqa"}
    vqa = axes["easyvqa"]
    bars = [c for c in vqa.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 3
    legend = vqa.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["alpha", "beta", "gamma"]
    data_line = bars[0].lines[0]
    assert np.asarray(data_line.get_xdata()).tolist() == [0, 4, 8]
    assert np.asarray(data_line.get_ydata()).tolist() == [41.0, 50.5, 56.0]
    assert len(axes["captions"].containers) == 1


def test_benchmark_filter_and_unknown(results_dir: Path) -> None:
    lb = build_leaderboard(load_records(results_dir))
    fig = plot_shot_scaling(lb, ["easyvqa"])
    assert [ax.get_title() for ax in fig.axes] == ["easyvqa"]
    with pytest.raises(UserError, match="available: captions, easyvqa"):
        plot_shot_scaling(lb, ["nocaps"])


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(["plot", *argv])
    return args.func(args)


def test_cli_writes_png_and_svg(results_dir: Path, tmp_path: Path) -> None:
    png = tmp_path / "out" / "scaling.png"
    assert _cli(["--results", str(results_dir), "--output", str(png)]) == 0
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000
    svg = tmp_path / "scaling.svg"
    assert _cli(["--results", str(results_dir), "--benchmark", "easyvqa", "--output", str(svg)]) == 0
    assert "<svg" in svg.read_text()
    assert _cli(["--results", str(results_dir), "--output", str(tmp_path / "x.gif")]) == 2
    assert not list(tmp_path.glob(".x.gif*"))
