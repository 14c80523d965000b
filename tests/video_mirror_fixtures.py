"""Tiny copies of the Hugging Face parquet mirrors the docs advertise, under the file names they publish.

Each ``make_<mirror>(root)`` writes ``root/<card data_dir>/`` as the mirror is downloaded (docs/benchmarks.md):
the parquet file(s) and clips in mixed containers (``tests.video_benchmark_fixtures.clip``). None of these
mirrors has a train split: the tests check that demos then come from where the docs say.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.video_benchmark_fixtures import clip


def _parquet(path: Path, rows: list[dict]) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)


def _nextqa_videos(d: Path, videos: list[int]) -> None:
    (d / "map_vid_vidorID.json").write_text(json.dumps({str(v): f"2000/{v}" for v in videos}))
    for k, v in enumerate(videos):
        clip(d / "NExTVideo" / "2000" / f"{v}.mp4", 10 + k)  # .mp4 (variable rate), .webm, .mkv, .avi


def make_nextqa_oe_mirror(root: Path) -> Path:
    """``OE/test-00000-of-00001.parquet`` with ``additional_ref_answer`` (no second-answer json, no train)."""
    d = root / "nextqa"
    rows = [{"video": 7000 + i, "qid": i, "question": f"what is the girl holding {i}",
             "answer": ("cup", "dog", "ball", "book")[i], "type": ("CW", "TN", "DB", "DC")[i],
             "additional_ref_answer": ("mug", None, "toy", "")[i]} for i in range(4)]
    _parquet(d / "OE" / "test-00000-of-00001.parquet", rows)
    _nextqa_videos(d, [r["video"] for r in rows])
    return d


def make_nextqa_mc_mirror(root: Path) -> Path:
    """``MC/test-00000-of-00001.parquet`` (the mirror's only MC split; no qid column)."""
    d = root / "nextqa"
    options = ("to catch the ball", "he was late", "to dance", "to eat", "to sleep")
    rows = [{"video": 7100 + i, "question": f"why did the man run {i}", "answer": i % 5, "type": "CW",
             **{f"a{k}": options[(k + i) % 5] for k in range(5)}} for i in range(4)]
    _parquet(d / "MC" / "test-00000-of-00001.parquet", rows)
    _nextqa_videos(d, [r["video"] for r in rows])
    return d


def make_vatex_mirror(root: Path) -> Path:
    """``vatex_test/test-00000-of-00001.parquet`` (videoID, enCap) + the clips named by videoID."""
    d = root / "vatex"
    rows = [{"videoID": f"mirYt{i:02d}_{i:06d}_{i + 10:06d}", "enCap": [f"a dog runs {i}", "a dog plays"]}
            for i in range(4)]
    _parquet(d / "vatex_test" / "test-00000-of-00001.parquet", rows)
    for i, r in enumerate(rows):
        clip(d / "videos" / f"{r['videoID']}.mp4", 70 + i)
    return d


def make_youcook2_mirror(root: Path) -> Path:
    """``data/val-00000-of-00001.parquet`` whose ``id`` repeats within a video (as the mirror's does)."""
    d = root / "youcook2"
    rows = []
    for v, segments in enumerate((((0.0, 1.0), (0.5, 2.0)), ((0.0, 2.0),), ((1.0, 2.0),))):
        for k, (s, e) in enumerate(segments):
            rows.append({"id": str(v), "youtube_id": f"ycm{v}", "recipe_type": "113", "segment": [s, e],
                         "sentence": f"mix the {('flour', 'eggs')[k]} {v}", "video_path": f"validation/113/ycm{v}.mp4"})
    _parquet(d / "data" / "val-00000-of-00001.parquet", rows)
    for v in range(3):
        clip(d / "raw_videos" / "validation" / "113" / f"ycm{v}.mp4", 94 + v)  # .MP4 (variable rate), .mp4, .webm
    return d


MIRRORS: dict[str, Callable[[Path], Path]] = {
    "nextqa_oe": make_nextqa_oe_mirror,
    "nextqa_mc": make_nextqa_mc_mirror,
    "vatex": make_vatex_mirror,
    "youcook2": make_youcook2_mirror,
}
"""Benchmark id -> builder of its mirror; the mirror's eval split is ``MIRROR_SPLIT[id]``."""

MIRROR_SPLIT = {"nextqa_oe": "test", "nextqa_mc": "test", "vatex": "test", "youcook2": "val"}
