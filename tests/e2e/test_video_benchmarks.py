"""The nine Flamingo video benchmarks end to end with the tiny model, on official-format fixtures.

One test per benchmark: the fast engine and the reference path (OpenFlamingo's loop) run 0 and 2 shots on the
same two eval samples and must agree (same prompts and demos; same answers, compared exactly only because the
fixture's decisions are far from ties: tests/margins.py); then ``flamingo-eval score`` re-scores the fast
run from its predictions alone. NExT-OE's WUPS runs on the WordNet stand-in (no nltk data on a clean machine).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flamingo_eval.cli import main
from flamingo_eval.errors import UserError
from tests.margins import assert_generation_margin, assert_rank_margin
from tests.video_benchmark_fixtures import BUILDERS
from tests.wordnet_standin import StandInWordNet

VIDEO_BENCHMARKS = [
    "msvd_qa",
    "msrvtt_qa",
    "ivqa",
    "nextqa_oe",
    "nextqa_mc",
    "star",
    "vatex",
    "youcook2",
    "kinetics700",
    "rareact",
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("video_data")
    for build in BUILDERS.values():
        build(root)
    return root


@pytest.fixture
def standin_wordnet(monkeypatch):
    import flamingo_eval.metrics.wups as wups

    monkeypatch.setattr(wups, "NltkWordNet", StandInWordNet)


def _overrides(bench: str, root: Path) -> list[str]:
    if bench == "nextqa_oe":  # the stop-word list comes with the NExT-OE release (here: the fixture's)
        return [f"benchmarks.metric.args.stopwords_file={root / 'nextqa' / 'oe' / 'stopwords.txt'}"]
    return []


SHOTS = {"rareact": ["0"]}  # RareAct is 0-shot only (Flamingo's protocol); its demo split is its eval split
# RareAct: 3 clips, so the two text-only demos of a 0-shot prompt exist besides the query. Captioning: 6 new
# tokens instead of 20 keeps the reference path (no KV reuse across beams) quick.
EXTRA = {
    "rareact": ["--limit", "3"],
    "vatex": ["benchmarks.generation.max_new_tokens=6"],
    "youcook2": ["benchmarks.generation.max_new_tokens=6"],
}


def _lines(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "predictions.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("bench", VIDEO_BENCHMARKS)
def test_video_benchmark_engine_equals_reference_and_rescores(bench, data_root, tmp_path, capsys, standin_wordnet):
    def run(engine: str, out: Path) -> list[dict]:
        assert (
            main(
                [
                    "run",
                    bench,
                    "--model",
                    "tiny",
                    "--shots",
                    *SHOTS.get(bench, ["0", "2"]),
                    "--limit",
                    "2",
                    "--data-root",
                    str(data_root),
                    "--output",
                    str(out),
                    "--overwrite",
                    f"model.engine={engine}",
                    *_overrides(bench, data_root),
                    *EXTRA.get(bench, []),
                ]
            )
            == 0
        )
        return _lines(out)

    fast, ref = run("fast", tmp_path / "fast"), run("reference", tmp_path / "reference")
    n = 3 if bench == "rareact" else 2
    assert len(fast) == n * len(SHOTS.get(bench, ["0", "2"])) and [
        (x["shots"], x["sample_id"], x["demo_ids"], x["prompt_hash"]) for x in fast
    ] == [(x["shots"], x["sample_id"], x["demo_ids"], x["prompt_hash"]) for x in ref]
    assert all(len(x["demo_ids"]) == 2 for x in fast if x["shots"] == 2)
    if fast[0]["scores"] is None:
        assert_generation_margin(
            lambda: [x["raw_output"] for x in run("fast", tmp_path / "noisy")],
            [x["raw_output"] for x in fast],
            seeds=(0,),
        )
        assert [x["raw_output"] for x in fast] == [x["raw_output"] for x in ref]
    else:
        assert_rank_margin([x["scores"] for x in fast], 1e-4)
        for a, b in zip(fast, ref):
            assert a["scores"] == pytest.approx(b["scores"], abs=1e-4)
    assert [x["answer"] for x in fast] == [x["answer"] for x in ref]
    rec = json.loads((tmp_path / "fast" / "record.json").read_text())
    assert rec["media"]["videos_decoded"] > 0 and rec["media"]["short_clips"] == 0
    capsys.readouterr()
    assert main(["score", bench, "--predictions", str(tmp_path / "fast"), *_overrides(bench, data_root)]) == 0
    scored = json.loads(capsys.readouterr().out)
    for mine, theirs in zip(scored["results"], rec["results"]):
        assert mine["trials"][0]["value"] == pytest.approx(theirs["trials"][0]["value"], abs=1e-9)
        assert mine["trials"][0]["extras"] == pytest.approx(theirs["trials"][0]["extras"], abs=1e-9)


def test_star_test_split_writes_a_submission(data_root, tmp_path):
    out = tmp_path / "star_test"
    assert (
        main(
            [
                "run",
                "star",
                "--model",
                "tiny",
                "--shots",
                "0",
                "--data-root",
                str(data_root),
                "--output",
                str(out),
                "benchmarks.eval_split=test",
            ]
        )
        == 0
    )
    files = sorted(out.glob("submission*.json"))
    assert files, "an unannotated STAR split must produce a submission file"
    entries = json.loads(files[0].read_text())
    assert {e["sample_id"] for e in entries} == {
        f"{t}_T{i + 1}_{i}" for i, t in enumerate(("Interaction", "Sequence", "Prediction", "Feasibility"))
    }
    assert all(e["answer"] in ("The cup.", "The door.", "The book.", "The towel.") for e in entries)


def _run_oe(data_root, out, *extra):
    """``flamingo-eval run nextqa_oe`` with the tiny model at 0 shots; returns the exit code."""
    args = ["run", "nextqa_oe", "--model", "tiny", "--shots", "0", "--data-root", str(data_root)]
    return main([*args, "--output", str(out), *extra])


def test_nextqa_oe_without_stopwords_or_wordnet_fails_at_start(data_root, tmp_path, capsys):
    assert _run_oe(data_root, tmp_path / "x") == 2
    assert "stopwords.txt" in capsys.readouterr().err
    try:
        from flamingo_eval.metrics.wups import NltkWordNet

        NltkWordNet()
        pytest.skip("this machine has nltk's WordNet data: the missing-data message cannot be shown")
    except UserError:
        pass
    assert _run_oe(data_root, tmp_path / "y", *_overrides("nextqa_oe", data_root)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "nltk.downloader" in err[-1] and len(err[-1]) < 400  # one line saying how to get WordNet
