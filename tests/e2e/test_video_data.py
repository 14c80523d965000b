"""Video data as researchers have it: official layouts and parquet mirrors as downloaded, clips in mixed
containers (MP4/H.264, WebM/VP9, MKV, AVI, ``.MP4``, one variable-rate clip per fixture), checked by
``flamingo-eval data check`` (stat only) and by a run's start-up before any model loads. No model runs here
except where a refusal must happen before it (the full tiny runs are tests/e2e/test_video_benchmarks.py).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from flamingo_eval.cli import main
from flamingo_eval.config_load import compose_config
from flamingo_eval.task import make_adapter
from tests.video_benchmark_fixtures import BUILDERS
from tests.video_mirror_fixtures import MIRROR_SPLIT, MIRRORS

VIDEO = sorted(BUILDERS)


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("official")
    for build in BUILDERS.values():
        build(root)
    return root


def _check(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["data", "check", *args])
    out = capsys.readouterr()
    return rc, out.out + out.err


@pytest.mark.parametrize("bench", VIDEO)
def test_official_layout_in_mixed_containers_checks_and_loads_without_renaming(bench, official, capsys):
    rc, out = _check(capsys, bench, "--data-root", str(official))
    assert rc == 0 and "0 missing or unusable" in out, out
    cfg = compose_config(bench, "tiny", [f"run.data_root={official}"])
    adapter = make_adapter(cfg.benchmarks, str(official))
    samples = adapter.load(cfg.benchmarks.eval_split)
    suffixes = {Path(m.path).suffix for s in samples for m in s.media}
    assert samples and all(Path(m.path).is_file() for s in samples for m in s.media)
    assert len(suffixes) >= 2 or bench == "rareact", suffixes  # found in whatever container was written


@pytest.mark.parametrize("bench", sorted(MIRRORS))
def test_mirror_as_published_checks_and_loads(bench, tmp_path, capsys):
    pytest.importorskip("pyarrow")
    MIRRORS[bench](tmp_path)
    split = MIRROR_SPLIT[bench]
    args = [bench, "--data-root", str(tmp_path), f"benchmarks.eval_split={split}", f"benchmarks.demo_split={split}"]
    rc, out = _check(capsys, *args)
    assert rc == 0 and "parquet" in out, out
    cfg = compose_config(bench, "tiny", [f"run.data_root={tmp_path}", f"benchmarks.eval_split={split}"])
    samples = make_adapter(cfg.benchmarks, str(tmp_path)).load(split)
    assert len({s.id for s in samples}) == len(samples) == 4
    if bench == "nextqa_oe":  # the mirror's additional_ref_answer is the second reference (blank: none)
        assert [s.references for s in samples] == [("cup", "mug"), ("dog",), ("ball", "toy"), ("book",)]


@pytest.mark.parametrize("bench", sorted(MIRRORS))
def test_mirror_without_train_split_says_where_demos_come_from(bench, tmp_path, capsys, monkeypatch):
    pytest.importorskip("pyarrow")
    import flamingo_eval.metrics.wups as wups
    from tests.wordnet_standin import StandInWordNet

    monkeypatch.setattr(wups, "NltkWordNet", StandInWordNet)  # no nltk data on a clean machine
    MIRRORS[bench](tmp_path)
    split = MIRROR_SPLIT[bench]
    (tmp_path / "stopwords.txt").write_text("the\n")  # NExT-OE's WUPS needs its list before data is read
    extra = [f"benchmarks.metric.args.stopwords_file={tmp_path / 'stopwords.txt'}"] if bench == "nextqa_oe" else []
    capsys.readouterr()
    rc = main(["run", bench, "--model", "tiny", "--shots", "0", "--data-root", str(tmp_path),
               "--output", str(tmp_path / "run"), f"benchmarks.eval_split={split}", *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err, err
    assert "demos come from split 'train'" in err and f"benchmarks.demo_split={split}" in err, err


def test_data_check_names_every_missing_or_unusable_video(official, tmp_path, capsys):
    BUILDERS["msrvtt_qa"](tmp_path)
    videos = tmp_path / "msrvtt_qa" / "videos"
    clips = {p.stem: p for p in videos.iterdir()}
    clips["video200"].unlink()  # missing
    clips["video201"].unlink()
    os.symlink(videos / "gone.mp4", videos / "video201.mkv")  # broken link
    clips["video202"].unlink()
    os.symlink(videos / "video202.webm", videos / "video202.webm.tmp")
    os.rename(videos / "video202.webm.tmp", videos / "video202.webm")  # a link to itself: a loop
    clips["video203"].unlink()
    os.symlink("/dev/null", videos / "video203.mp4")  # a device
    clips["video0"].write_bytes(b"")  # empty
    rc, out = _check(capsys, "msrvtt_qa", "--data-root", str(tmp_path))
    assert rc == 1
    expect = {"video200.mp4": "missing", "video201.mkv": "broken symbolic link", "video202.webm": "symbolic link loop",
              "video203.mp4": "not a regular file", clips["video0"].name: "empty (zero-byte) file"}
    bad = [ln for ln in out.splitlines() if "[BAD]" in ln]
    assert len(bad) == len(expect), out
    for name, reason in expect.items():
        assert any(f"{videos / name}: {reason}" in ln for ln in bad), (name, out)
    rc = main(["run", "msrvtt_qa", "--model", "tiny", "--shots", "0", "--data-root", str(tmp_path),
               "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()  # the run stops before the model loads, naming the first eval video
    assert rc == 2 and "\n" not in err and f"{videos / 'video200.mp4'}: missing" in err and ".webm" in err, err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: a permission problem cannot be made")
def test_data_check_names_an_unreadable_video(tmp_path, capsys):
    BUILDERS["msrvtt_qa"](tmp_path)
    victim = next((tmp_path / "msrvtt_qa" / "videos").glob("video200.*"))
    victim.chmod(0)
    rc, out = _check(capsys, "msrvtt_qa", "--data-root", str(tmp_path))
    assert rc == 1 and f"{victim}: not readable (permission denied)" in out


def test_data_check_takes_the_run_overrides(official, tmp_path, capsys):
    moved = tmp_path / "elsewhere"
    (official / "vatex").rename(moved)
    try:
        rc, out = _check(capsys, "vatex", "--data-root", str(official))
        assert rc == 1 and "MISSING" in out
        rc, out = _check(capsys, "vatex", f"benchmarks.data_dir={moved}", "--data-root", str(official))
        assert rc == 0 and str(moved) in out, out
    finally:
        moved.rename(official / "vatex")


def test_kinetics_flat_folder_reads_like_class_folders(tmp_path, capsys):
    BUILDERS["kinetics700"](tmp_path)
    val = tmp_path / "kinetics700" / "val"
    for f in list(val.rglob("*")):
        if f.is_file():
            f.rename(val / f.name)
    rc, out = _check(capsys, "kinetics700", "--data-root", str(tmp_path))
    assert rc == 0, out
    cfg = compose_config("kinetics700", "tiny", [f"run.data_root={tmp_path}"])
    samples = make_adapter(cfg.benchmarks, str(tmp_path)).load("val")
    assert samples and all(Path(s.media[0].path).parent == val for s in samples)


def test_video_map_null_removes_the_optional_file(official):
    cfg = compose_config("msvd_qa", "tiny", [f"run.data_root={official}", "benchmarks.files.video_map=null"])
    adapter = make_adapter(cfg.benchmarks, str(official))
    assert "video_map" not in adapter.files("test")
    assert Path(adapter.load("test")[0].media[0].path).name.startswith("vid200")  # the key is the file stem


def test_rareact_refuses_few_shot_in_one_line(official, tmp_path, capsys):
    rc = main(["run", "rareact", "--model", "tiny", "--shots", "2", "--data-root", str(official),
               "--output", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "at most 0 shots" in err and "--shots 0" in err, err


def _ivqa(tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    d = BUILDERS["ivqa"](tmp_path)
    path = d / "test.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    edit(rows)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.mark.parametrize("cell, value, says", [
    ("start", "", "row 2 column 'start' is empty"),
    ("end", "nan", "row 2 column 'end' is 'nan', not a non-negative number"),
    ("question", "", "row 2 column 'question' is empty"),
    ("question", "  ", "row 2 column 'question' is empty"),
])
def test_bad_ivqa_cells_are_one_line_naming_file_row_and_column(cell, value, says, tmp_path, capsys):
    path = _ivqa(tmp_path, lambda rows: rows[1].__setitem__(cell, value))
    rc, out = _check(capsys, "ivqa", "--data-root", str(tmp_path))
    err = out.strip().splitlines()[-1]
    assert rc == 2 and str(path) in err and says in err, out


def test_ivqa_numeric_answers_stay_as_written(tmp_path):
    def edit(rows: list[dict]) -> None:
        rows[0].update(answer1="2", answer2="2", answer3="2.0", answer4="02", answer5="two")

    _ivqa(tmp_path, edit)
    cfg = compose_config("ivqa", "tiny", [f"run.data_root={tmp_path}"])
    refs = make_adapter(cfg.benchmarks, str(tmp_path)).load("test")[0].references
    assert refs == ("2", "2", "2.0", "02", "two")


def test_csv_cut_mid_row_is_one_line(tmp_path, capsys):
    path = _ivqa(tmp_path, lambda rows: None)
    text = path.read_text()
    path.write_text(text[: text.rindex(",")])  # the last row loses its last cell
    rc, out = _check(capsys, "ivqa", "--data-root", str(tmp_path))
    err = out.strip().splitlines()[-1]
    assert rc == 2 and str(path) in err and "row 4" in err and "cut" in err, out
    path.write_text(text[: text.rindex(",") + 1] + '"an unterminated quote\n')
    rc, out = _check(capsys, "ivqa", "--data-root", str(tmp_path))
    assert rc == 2 and str(path) in out.strip().splitlines()[-1], out


def test_every_fixture_holds_three_containers(official, tmp_path):
    pytest.importorskip("pyarrow")
    for build in MIRRORS.values():
        build(tmp_path)
    for root in (official, tmp_path):
        for d in root.iterdir():
            exts = {p.suffix for p in d.rglob("*") if p.suffix.lower() in (".mp4", ".webm", ".mkv", ".avi")}
            assert len(exts) >= 3, (d, exts)


def test_youcook2_mirror_runs_with_demos_from_its_eval_split(tmp_path):
    pytest.importorskip("pyarrow")
    import json

    MIRRORS["youcook2"](tmp_path)
    out = tmp_path / "run"
    assert main(["run", "youcook2", "--model", "tiny", "--shots", "0", "--limit", "3", "--data-root", str(tmp_path),
                 "--output", str(out), "benchmarks.demo_split=val", "benchmarks.generation.max_new_tokens=3"]) == 0
    lines = [json.loads(ln) for ln in (out / "predictions.jsonl").read_text().splitlines()]
    assert [x["sample_id"] for x in lines] == ["ycm0_0", "ycm0_1", "ycm1_0"]  # (the demo pool is the 3 queries)
    assert all(x["sample_id"] not in x["demo_ids"] for x in lines)  # demos from the eval split, never the query


@pytest.mark.parametrize("kind, says", [("loop", "symbolic link loop"), ("device", "not a regular file"),
                                        ("broken", "broken symbolic link")])
def test_decoder_says_what_a_bad_link_is(kind, says, tmp_path):
    from flamingo_eval.errors import UserError
    from flamingo_eval.types import VideoRef
    from flamingo_eval.video import get_decoder

    path = tmp_path / "clip.mp4"
    os.symlink({"loop": path, "device": Path("/dev/null"), "broken": tmp_path / "gone.mp4"}[kind], path)
    with pytest.raises(UserError) as err:
        get_decoder().decode(VideoRef(str(path)))
    assert str(path) in str(err.value) and says in str(err.value) and "does not exist" not in str(err.value)


def test_blank_answer_option_is_one_line(tmp_path, capsys):
    d = BUILDERS["nextqa_mc"](tmp_path)
    path = d / "mc" / "val.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    rows[2]["a3"] = ""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    rc, out = _check(capsys, "nextqa_mc", "--data-root", str(tmp_path))
    err = out.strip().splitlines()[-1]
    assert rc == 2 and str(path) in err and "row 3 column 'a3'" in err, out
