"""Bad and unusual video input: one clear line naming the file, or the documented handling (files made here)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from flamingo_eval.errors import UserError
from flamingo_eval.types import FrameSampling, VideoRef
from flamingo_eval.video import MediaLoader, get_decoder
from tests.video_files import (
    color_frames,
    frame_index,
    rotate_90_clockwise_on_display,
    write_8k,
    write_audio_only,
    write_video,
    zero_payload,
)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    ok = write_video(d / "ok.mp4", color_frames(6))
    (d / "empty.mp4").write_bytes(b"")
    (d / "truncated.mp4").write_bytes(ok.read_bytes()[: ok.stat().st_size // 2])
    (d / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    return {"ok": ok, "missing": d / "missing.mp4", "empty": d / "empty.mp4", "truncated": d / "truncated.mp4",
            "corrupt": d / "corrupt.mp4", "audio_only": write_audio_only(d / "audio_only.wav"),
            "no_frames": zero_payload(ok, d / "no_frames.mp4"), "directory": d}


BAD = {"missing": "does not exist", "empty": "empty (zero-byte)", "truncated": "not a readable video",
       "corrupt": "not a readable video", "audio_only": "no video stream", "no_frames": "corrupt or truncated",
       "directory": "is a directory"}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_video_is_one_line_naming_the_file(kind: str, files: dict[str, Path]) -> None:
    with pytest.raises(UserError) as err:
        get_decoder().decode(VideoRef(str(files[kind])))
    msg = str(err.value)
    assert str(files[kind]) in msg and BAD[kind] in msg and "\n" not in msg, msg


def test_segment_past_the_end_names_the_file_and_the_clip_length(files: dict[str, Path]) -> None:
    with pytest.raises(UserError, match=r"ok\.mp4: segment 5-9 s starts at or past the end of the clip \(0\.750 s\)"):
        get_decoder().decode(VideoRef(str(files["ok"]), start=5, end=9))
    clamped = get_decoder().decode(VideoRef(str(files["ok"]), start=0.25, end=30, frames=FrameSampling.uniform(2)))
    assert [frame_index(f) for f in clamped.frames] == [3, 5]  # end clamped to 0.75 s: centres 0.375, 0.625 s


def test_variable_frame_rate_uses_presentation_times(tmp_path: Path) -> None:
    times = [0.0, 0.1, 0.5, 0.55, 1.5, 1.6, 3.0, 3.9]  # bursts and gaps
    path = write_video(tmp_path / "vfr.mp4", color_frames(len(times)), times=times)
    clip = get_decoder().decode(VideoRef(str(path), start=0, end=4.0, frames=FrameSampling.at_fps(1, 8)))
    assert [frame_index(f) for f in clip.frames] == [0, 3, 5, 6]  # shown at 0, 1, 2, 3 s (not frames 0, 2, 4, 6)


def test_rotation_metadata_is_applied(tmp_path: Path) -> None:
    path = rotate_90_clockwise_on_display(write_video(tmp_path / "phone.mp4", color_frames(2, w=48, h=32)))
    frame = get_decoder().decode(VideoRef(str(path), frames=FrameSampling.uniform(1))).frames[0]
    assert frame.size == (32, 48)  # portrait, as a player shows it
    a = np.asarray(frame).astype(int)
    top_right, top_left = a[:8, -8:].mean((0, 1)), a[:8, :8].mean((0, 1))
    assert top_right[0] > 200 and top_right[1] < 60 and top_left[0] < 100  # the top-left marker turned clockwise


def test_an_8k_frame_is_scaled_down_while_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_8k(tmp_path / "8k.mp4")
    frame = get_decoder().decode(VideoRef(str(path), frames=FrameSampling.uniform(1))).frames[0]
    assert frame.size == (1920, 1080)  # <= 1920x1080 pixels, aspect kept; never an 8K RGB array
    r, g, b = np.asarray(frame)[540, 960].astype(int)
    assert r > 200 and g < 40 and b < 40
    monkeypatch.setenv("FLAMINGO_EVAL_MAX_FRAME_PIXELS", "10000")
    small = get_decoder().decode(VideoRef(str(path), frames=FrameSampling.uniform(1))).frames[0]
    assert small.size[0] * small.size[1] <= 10000 and abs(small.size[0] / small.size[1] - 16 / 9) < 0.1


def test_a_short_clip_repeats_its_last_frame_and_is_counted_once(tmp_path: Path) -> None:
    path = write_video(tmp_path / "three.mp4", color_frames(3))
    loader = MediaLoader()
    frames = loader.load(VideoRef(str(path)))  # 8 frames asked of a 3-frame clip
    loader.load(VideoRef(str(path)))
    assert [frame_index(f) for f in frames] == [0, 1, 2, 2, 2, 2, 2, 2]
    stats = loader.stats()
    assert stats["videos_decoded"] == 2 and stats["short_clips"] == 1
    assert stats["short_clip_examples"] == ["three.mp4#count=8"]


def test_unknown_video_id_names_the_question_and_the_mapping(tmp_path: Path) -> None:
    from flamingo_eval.benchmarks.video import VideoQAAdapter
    from flamingo_eval.config_load import compose_config

    rows = [{"id": 1, "video_id": 7, "question": "what?", "answer": "x"},
            {"id": 2, "video_id": 9, "question": "who?", "answer": "y"}]
    (tmp_path / "test_qa.json").write_text(json.dumps(rows))
    (tmp_path / "mapping.txt").write_text("clipA vid7\n")
    card = compose_config("easyvideo", "tiny").benchmarks
    card.adapter, card.files = "video_qa", {"test_qa": "test_qa.json", "videos": "v", "video_map": "mapping.txt"}
    card.adapter_args = {"video_key": "vid{video_id}", "video_pattern": "{name}.avi"}
    with pytest.raises(UserError, match=r"test_qa\.json: entry 1 refers to video 'vid9', which .*mapping\.txt does "
                                        r"not list"):
        VideoQAAdapter(card, tmp_path).load("test")
    (tmp_path / "mapping.txt").write_text("clipA vid7\nclipB vid9\n")
    samples = VideoQAAdapter(card, tmp_path).load("test")
    assert [Path(s.media[0].path).name for s in samples] == ["clipA.avi", "clipB.avi"]  # type: ignore[union-attr]
    assert samples[0].fields["question"] == "what?" and samples[0].references == ("x",)


def test_bad_eval_video_in_a_run_fails_or_is_skipped_and_counted(tmp_path: Path, capsys) -> None:
    from flamingo_eval.cli import main
    from flamingo_eval.video.easyvideo import generate

    root = tmp_path / "ev"
    generate(root, n_train=8, n_test=3)
    bad = root / "videos" / "test-00001.mp4"
    bad.write_bytes(bad.read_bytes()[:200])
    args = ["run", "easyvideo", f"benchmarks.adapter_args.root={root}", "--model", "tiny", "--shots", "2"]
    assert main([*args, "--output", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert str(bad) in err and "\n" not in err
    assert main([*args, "--output", str(tmp_path / "s"), "--on-bad-sample", "skip"]) == 0
    trial = json.loads((tmp_path / "s" / "record.json").read_text())["results"][0]["trials"][0]
    assert trial["skipped"] == 1 and trial["skipped_ids"] == ["test-00001"] and trial["n"] == 2
    assert os.environ.get("FLAMINGO_EVAL_MAX_FRAME_PIXELS") is None
