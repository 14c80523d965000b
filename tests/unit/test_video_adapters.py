"""Video benchmark adapters on the official layouts and on the Hugging Face parquet mirrors (no model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flamingo_eval.cli import main
from flamingo_eval.config_load import compose_config
from flamingo_eval.errors import UserError
from flamingo_eval.task import make_adapter
from tests.video_benchmark_fixtures import BUILDERS, CONTAINERS, clip


def _found(sample, tail: str) -> bool:
    """The sample's clip exists and is ``tail`` in whichever container the fixture wrote it (CONTAINERS)."""
    path = Path(sample.media[0].path)
    return path.is_file() and str(path.with_suffix("")).endswith(tail) and path.suffix in CONTAINERS


def _adapter(bench: str, root: Path, *overrides: str):
    cfg = compose_config(bench, "tiny", [f"run.data_root={root}", *overrides])
    return make_adapter(cfg.benchmarks, str(root))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vdata")
    for bench in ("nextqa_oe", "nextqa_mc", "star", "youcook2", "kinetics700", "ivqa", "msvd_qa", "rareact"):
        BUILDERS[bench](out)
    return out


def test_official_layouts(root: Path) -> None:
    oe = _adapter("nextqa_oe", root).load("test")
    assert [s.id for s in oe] == ["4000_0", "4001_1", "4002_2", "4003_3"]
    assert oe[0].references == ("ball", "toy") and oe[2].references == ("yes",)  # + the second reference
    assert oe[1].fields["metric_extra"] == {"type": "TN"}
    assert _found(oe[0], "NExTVideo/1040/4000")
    mc = _adapter("nextqa_mc", root).load("val")
    assert (
        mc[1].label == 1
        and mc[1].references == (mc[1].fields["candidates"][1],)
        and len(mc[1].fields["candidates"]) == 5
    )
    star = _adapter("star", root).load("val")
    assert [s.fields["type"] for s in star] == ["Interaction", "Sequence", "Prediction", "Feasibility"]
    assert star[0].media[0].end == 2.0 and star[2].fields["candidates"][star[2].label] == star[2].references[0]
    assert all(not s.references and s.label is None for s in _adapter("star", root).load("test"))
    yc = _adapter("youcook2", root).load("val")
    assert len(yc) == 6 and yc[1].id == "ycval0_1" and (yc[1].media[0].start, yc[1].media[0].end) == (0.5, 2.0)
    assert _found(yc[1], "raw_videos/validation/101/ycval0")
    iv = _adapter("ivqa", root).load("test")
    assert len(iv[0].references) == 5 and iv[0].media[0].end == 2.0
    msvd = _adapter("msvd_qa", root).load("test")
    assert _found(msvd[0], "YouTubeClips/yt200_0_5")
    rare = _adapter("rareact", root)
    assert rare.candidates == ("cut phone", "wash phone", "cut shoe", "blend book")
    assert rare.load("test")[3].fields["metric_extra"]["annotation"] == 2


def test_kinetics_keeps_the_first_n_clips_per_class(root: Path) -> None:
    adapter = _adapter("kinetics700", root, "benchmarks.adapter_args.per_class=2")
    val = adapter.load("val")
    assert adapter.candidates == ("abseiling", "baking cookies", "juggling balls")
    assert len(val) == 6 and [s.label for s in val] == [0, 0, 1, 1, 2, 2]
    assert _found(val[0], "val/abseiling/val0x0_000000_000010")
    assert len(_adapter("kinetics700", root, "benchmarks.adapter_args.per_class=null").load("val")) == 9


def test_parquet_mirrors(tmp_path: Path, capsys) -> None:
    """The Hugging Face mirrors under the file names they publish (docs/benchmarks.md lists them)."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    d = tmp_path / "nextqa"
    (d / "MC").mkdir(parents=True)
    pd.DataFrame(
        [{"video": 7, "question": "why", "answer": 2, "type": "CW", **{f"a{k}": f"option {k}" for k in range(5)}}]
    ).to_parquet(d / "MC" / "test-00000-of-00001.parquet")
    (d / "map_vid_vidorID.json").write_text('{"7": "0001/7"}')
    mc = _adapter("nextqa_mc", tmp_path).load("test")
    assert mc[0].id == "test-0" and mc[0].label == 2 and mc[0].references == ("option 2",)  # no qid: numbered
    (d / "OE").mkdir()
    pd.DataFrame([{"video": 7, "qid": 3, "question": "what", "answer": "dog", "type": "CW",
                   "additional_ref_answer": "puppy"},
                  {"video": 7, "qid": 4, "question": "who", "answer": "man", "type": "DC",
                   "additional_ref_answer": None}]).to_parquet(d / "OE" / "test-00000-of-00001.parquet")
    oe = _adapter("nextqa_oe", tmp_path)
    assert "test_second_answers" not in oe.files("test")  # the mirror's column replaces the official json
    assert [s.references for s in oe.load("test")] == [("dog", "puppy"), ("man",)]
    v = tmp_path / "vatex" / "vatex_test"
    v.mkdir(parents=True)
    pd.DataFrame([{"videoID": "abc_000001_000011", "enCap": ["a cat", "a kitten"]}]).to_parquet(
        v / "test-00000-of-00001.parquet"
    )
    vx = _adapter("vatex", tmp_path).load("test")
    assert vx[0].references == ("a cat", "a kitten") and vx[0].media[0].path.endswith("videos/abc_000001_000011.mp4")
    y = tmp_path / "youcook2" / "data"
    y.mkdir(parents=True)
    pd.DataFrame(
        [{"id": "3", "segment": [5.0, 9.0], "sentence": "add salt", "video_path": "validation/113/xyz.mp4"},
         {"id": "3", "segment": [1.0, 4.5], "sentence": "stir the soup", "video_path": "validation/113/xyz.mp4"}]
    ).to_parquet(y / "val-00000-of-00001.parquet")
    clip(tmp_path / "youcook2" / "raw_videos" / "validation" / "113" / "xyz.mp4", 1)
    yc = _adapter("youcook2", tmp_path).load("val")
    assert [s.id for s in yc] == ["xyz_1", "xyz_0"]  # the mirror's id repeats: <video>_<rank by start>
    assert yc[1].references == ("stir the soup",) and (yc[1].media[0].start, yc[1].media[0].end) == (1.0, 4.5)
    assert _found(yc[0], "raw_videos/validation/113/xyz")
    capsys.readouterr()
    assert main(["data", "check", "youcook2", "--data-root", str(tmp_path), "benchmarks.demo_split=val"]) == 0
    assert "val-00000-of-00001.parquet" in capsys.readouterr().out  # data check says which layout it found


def test_bad_rows_are_one_line(tmp_path: Path) -> None:
    d = tmp_path / "star"
    d.mkdir()
    (d / "STAR_val.json").write_text(
        '[{"question_id": "Sequence_T1_1", "question": "q", "video_id": "v", '
        '"start": 0, "end": 1, "answer": "nope", "choices": [{"choice": "a"}]}]'
    )
    with pytest.raises(UserError, match="none of its 1 options"):
        _adapter("star", tmp_path).load("val")
    (d / "STAR_val.json").write_text('{"not": "a list"}')
    with pytest.raises(UserError, match="expected a JSON list"):
        _adapter("star", tmp_path).load("val")
