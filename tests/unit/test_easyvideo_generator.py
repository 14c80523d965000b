"""The easyvideo generator: machine-independent content (pinned digests) whose answers match the pixels."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from flamingo_eval.types import FrameSampling, VideoRef
from flamingo_eval.video import get_decoder
from flamingo_eval.video.easyvideo import (
    ANSWERS,
    BACKGROUND,
    COLORS,
    N_TEST,
    N_TRAIN,
    generate,
    qa_rows,
    render,
    scene,
)

# Pinned: the questions/answers of the whole dataset (as generate() writes them) and the raw RGB frames of the
# first 8 clips of each split. Pure functions of integer arithmetic and a SHA-256-seeded random.Random, so
# identical on every machine; a change here is a new dataset version (bump VERSION in video/easyvideo.py).
QUESTIONS_SHA256 = "51d8f27ad29ef9b600eb1f74eb089fdab79096f68abb8dfe691d8d93e652c146"
FRAMES_SHA256_FIRST_8 = "b22704dff79241c7de02a1f34167cf4090f41530c59085340348bd45d2070a86"


def test_questions_and_answers_are_pinned() -> None:
    h = hashlib.sha256()
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        h.update(json.dumps(qa_rows(split, n), indent=0).encode())
    assert h.hexdigest() == QUESTIONS_SHA256


def test_rendered_frames_are_pinned() -> None:
    h = hashlib.sha256()
    for split in ("train", "test"):
        for i in range(8):
            h.update(render(scene(split, i)).tobytes())
    assert h.hexdigest() == FRAMES_SHA256_FIRST_8


def test_splits_cover_every_answer_and_kinds_are_balanced() -> None:
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        rows = qa_rows(split, n)
        assert set(Counter(r["answer"] for r in rows)) == set(ANSWERS)
        assert set(Counter(r["type"] for r in rows).values()) == {n // 4}
        assert len({r["id"] for r in rows}) == n
    assert not {r["id"] for r in qa_rows("train", 40)} & {r["id"] for r in qa_rows("test", 40)}


def _centroid(frame: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(np.abs(frame.astype(int) - BACKGROUND).sum(-1) > 60)
    return np.array([xs.mean(), ys.mean()])


def test_decoded_clips_show_what_the_answers_say(tmp_path: Path) -> None:
    """Frames written to MP4 and decoded back still answer their questions (motion, colour, size)."""
    manifest = generate(tmp_path, n_train=4, n_test=0)  # kinds 0..3: direction, color_change, count_enter, grow
    assert manifest["n_train"] == 4 and (tmp_path / "train_qa.json").exists()
    rows = json.loads((tmp_path / "train_qa.json").read_text())
    assert rows == qa_rows("train", 4)
    frames = {r["type"]: [np.asarray(f) for f in get_decoder().decode(
        VideoRef(str(tmp_path / "videos" / f"{r['video_id']}.mp4"), frames=FrameSampling.uniform(8))).frames]
        for r in rows}
    answer = {r["type"]: r["answer"] for r in rows}
    move = _centroid(frames["direction"][-1]) - _centroid(frames["direction"][0])
    way = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[answer["direction"]]
    assert float(np.dot(move, way)) > 15
    last = frames["color_change"][-1][_centroid_mask(frames["color_change"][-1])].mean(0)
    assert np.abs(last - COLORS[answer["color_change"]]).max() < 40
    size = [int(_centroid_mask(f).sum()) for f in frames["grow_shrink"]]
    assert (size[-1] > 2 * size[0]) == (answer["grow_shrink"] == "grow")


def _centroid_mask(frame: np.ndarray) -> np.ndarray:
    return np.abs(frame.astype(int) - BACKGROUND).sum(-1) > 60


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_prefix_of_the_dataset_is_the_prefix_of_the_full_one(split: str) -> None:
    assert qa_rows(split, 10) == qa_rows(split, 30)[:10]
