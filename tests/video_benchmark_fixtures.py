"""Tiny official-format fixtures of the nine video benchmarks (annotation files + H.264 clips written with PyAV).

Each ``make_<id>(root)`` writes ``root/<card data_dir>/`` in the layout its card reads (docs/benchmarks.md):
a handful of demo-split and eval-split entries, clips of 32x32 pixels, 16 frames at 8 fps (2 s), each clip a
different colour so their latents differ. ``BUILDERS`` maps benchmark ids to builders; all nine together
write about 60 clips (~100 KB) in about a second.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.video_files import write_video

TYPES_OE = ("CW", "TN", "DB", "DC")
STAR_TYPES = ("Interaction", "Sequence", "Prediction", "Feasibility")


CONTAINERS = (".mp4", ".webm", ".mkv", ".avi", ".MP4")
"""What official downloaders leave (youtube-dl: mp4/webm/mkv; MSVD: avi; an upper-case extension): clip ``i`` of a
fixture is written as ``CONTAINERS[i % 5]`` whatever extension its card's pattern names, so every benchmark
reads clips in H.264 MP4, VP9 WebM, H.264 MKV and MPEG-4 AVI with no renaming. Clip ``i % 7 == 3`` has a
variable frame rate."""

VFR_TIMES = [0.0, 0.05, 0.1, 0.4, 0.45, 0.5, 0.9, 1.0, 1.1, 1.2, 1.5, 1.55, 1.6, 1.7, 1.8, 1.95]


def clip(path: Path, i: int, frames: int = 16, mixed: bool = True, vfr: bool = False) -> Path:
    """A 2 s clip (8 fps) whose colour depends on ``i`` and that brightens over time (more than one frame matters);
    ``mixed``: in container ``CONTAINERS[i % 5]`` (module docstring), variable-rate when ``i % 7 == 3`` or ``vfr``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mixed:
        path = path.with_name(path.name[: -len(path.suffix)] + CONTAINERS[i % len(CONTAINERS)])
    base = np.array([(37 * i) % 200, (91 * i + 60) % 200, (53 * i + 120) % 200], np.int64)
    out = []
    for f in range(frames):
        a = np.zeros((32, 32, 3), np.uint8)
        a[:] = np.clip(base + 6 * f, 0, 255).astype(np.uint8)
        a[(3 * i) % 24 : (3 * i) % 24 + 8, f : f + 8] = 255  # a white square moving right
        out.append(a)
    vfr = mixed and frames == len(VFR_TIMES) and (vfr or i % 7 == 3)
    return write_video(path, out, fps=8, times=VFR_TIMES if vfr else None)


def _json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1), encoding="utf-8")


def _csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


ANSWERS = ("red", "dog", "two", "yes", "man", "ball")


def make_msvd_qa(root: Path, n: int = 4) -> Path:
    d = root / "msvd_qa"
    lines = []
    for split, off in (("train", 0), ("val", 100), ("test", 200)):
        rows = [
            {"answer": ANSWERS[i % 6], "id": off + i, "question": f"what is in clip {i}?", "video_id": off + i}
            for i in range(n)
        ]
        _json(d / f"{split}_qa.json", rows)
        for i in range(n):
            lines.append(f"yt{off + i}_{i}_{i + 5} vid{off + i}")
            if split != "val":
                clip(d / "YouTubeClips" / f"yt{off + i}_{i}_{i + 5}.avi", off + i)
    (d / "youtube_mapping.txt").write_text("\n".join(lines) + "\n")
    return d


def make_msrvtt_qa(root: Path, n: int = 4) -> Path:
    d = root / "msrvtt_qa"
    for split, off in (("train", 0), ("val", 100), ("test", 200)):
        _json(
            d / f"{split}_qa.json",
            [
                {
                    "answer": ANSWERS[(i + 1) % 6],
                    "id": off + i,
                    "video_id": off + i,
                    "question": f"who is in video {i}?",
                }
                for i in range(n)
            ],
        )
        for i in range(n if split != "val" else 0):
            clip(d / "videos" / f"video{off + i}.mp4", off + i + 7)
    return d


def make_ivqa(root: Path, n: int = 4) -> Path:
    d = root / "ivqa"
    for split in ("train", "val", "test"):
        rows = []
        for i in range(n):
            vid = f"{split}Vid{i:02d}"
            rows.append(
                {
                    "video_id": vid,
                    "start": 0,
                    "end": 2,
                    "question": f"what tool is used {i}?",
                    **{f"answer{k + 1}": ANSWERS[(i + (k // 2)) % 6] for k in range(5)},
                }
            )
            if split != "val":
                clip(d / "videos" / f"{vid}.mp4", 20 + i + (10 if split == "test" else 0))
        _csv(d / f"{split}.csv", rows)
    return d


def _nextqa_common(d: Path, videos: list[int], vfr: tuple[int, ...] = ()) -> None:
    file = d / "map_vid_vidorID.json"  # NExT-OE and NExT-QA MC share it (one NExT-QA release)
    mapping = json.loads(file.read_text()) if file.exists() else {}
    mapping.update({str(v): f"{1000 + v // 100:04d}/{v}" for v in videos})
    _json(file, mapping)
    for v in videos:
        clip(d / "NExTVideo" / f"{mapping[str(v)]}.mp4", v % 97, vfr=v in vfr)


def _nextqa_row(video: int, qid: int, question: str, answer: object, qtype: str, **extra: object) -> dict:
    """One row of a NExT-QA csv (OE and MC share the columns; MC adds a0..a4)."""
    return {"video": video, "frame_count": 8, "width": 32, "height": 32, "question": question, "answer": answer,
            "qid": qid, "type": qtype, **extra}


def make_nextqa_oe(root: Path, n: int = 4) -> Path:
    d = root / "nextqa"
    videos = []
    for split, off in (("train", 3000), ("test", 4000)):
        rows = []
        for i in range(n):
            v = off + i
            videos.append(v)
            rows.append(_nextqa_row(v, i, f"what does the boy hold {i}", ("ball", "dog", "yes", "two")[i % 4],
                                    TYPES_OE[i % 4]))
        _csv(d / "oe" / f"{split}.csv", rows)
    _json(d / "oe" / "add_reference_answer_test.json", {"4000": {"0": "toy"}, "4001": {"1": "puppy"}})
    (d / "oe" / "stopwords.txt").write_text("the\na\nis\nof\n")
    _nextqa_common(d, videos)
    return d


def make_nextqa_mc(root: Path, n: int = 4) -> Path:
    d = root / "nextqa"
    videos = []
    for split, off in (("train", 5000), ("val", 6000)):
        rows = []
        for i in range(n):
            v = off + i
            videos.append(v)
            options = ("to catch the ball", "he was late", "to dance", "to eat", "to sleep")
            rows.append(_nextqa_row(v, i, f"why did the man run {i}", i % 5, ("CW", "TN", "DL", "CH")[i % 4],
                                    **{f"a{k}": options[(k + i) % 5] for k in range(5)}))
        _csv(d / "mc" / f"{split}.csv", rows)
    _nextqa_common(d, videos, vfr=(6003,))
    return d


def make_star(root: Path, n: int = 4) -> Path:
    d = root / "star"
    opts = ("The cup.", "The door.", "The book.", "The towel.")
    for split in ("train", "val", "test"):
        rows = []
        for i in range(n):
            vid = f"{split[:2].upper()}{i:03d}"
            row = {
                "question_id": f"{STAR_TYPES[i % 4]}_T{i + 1}_{i}",
                "question": f"Which object was taken {i}?",
                "video_id": vid,
                "start": 0.0,
                "end": 2.0,
                "choices": [{"choice_id": k, "choice": opts[(k + i) % 4]} for k in range(4)],
            }
            if split != "test":
                row["answer"] = opts[i % 4]
            rows.append(row)
            clip(d / "Charades_v1_480" / f"{vid}.mp4", 40 + i + 5 * len(split))
        _json(d / f"STAR_{split}.json", rows)
    return d


def make_vatex(root: Path, n: int = 4) -> Path:
    d = root / "vatex"
    for split, name in (("train", "training"), ("val", "validation")):
        rows = []
        for i in range(n):
            vid = f"{split}Yt{i:02d}_{i:06d}_{i + 10:06d}"
            rows.append(
                {
                    "videoID": vid,
                    "enCap": [
                        f"a person is cooking dish number {i} in a kitchen",
                        f"someone prepares food {i}",
                        *[f"a man cooks {k}" for k in range(8)],
                    ],
                    "chCap": ["..."] * 10,
                }
            )
            clip(d / "videos" / f"{vid}.mp4", 60 + i + (5 if split == "val" else 0))
        _json(d / f"vatex_{name}_v1.0.json", rows)
    return d


def make_youcook2(root: Path, n: int = 3) -> Path:
    d = root / "youcook2"
    db = {}
    for subset, off in (("training", 0), ("validation", 50)):
        for i in range(n):
            vid = f"yc{subset[:3]}{i}"
            db[vid] = {
                "subset": subset,
                "recipe_type": "101",
                "duration": 1.0,
                "video_url": "",
                "annotations": [
                    {
                        "id": k,
                        "segment": [0, 2] if k == 0 else [0.5, 2],
                        "sentence": f"add the {('salt', 'oil', 'egg')[(i + k) % 3]} to the pan",
                    }
                    for k in range(2)
                ],
            }
            clip(d / "raw_videos" / subset / "101" / f"{vid}.mp4", off + i)
    _json(d / "youcookii_annotations_trainval.json", {"database": db})
    return d


KINETICS = ("abseiling", "baking cookies", "juggling balls")


def make_kinetics700(root: Path, per_class: int = 2) -> Path:
    d = root / "kinetics700"
    for split, off in (("train", 0), ("val", 30)):
        rows = []
        for c, label in enumerate(KINETICS):
            for k in range(per_class + (1 if split == "val" else 0)):  # one val clip too many per class
                yt = f"{split}{c}x{k}"
                rows.append(
                    {"label": label, "youtube_id": yt, "time_start": 10 * k, "time_end": 10 * k + 10, "split": split}
                )
                clip(d / split / label / f"{yt}_{10 * k:06d}_{10 * k + 10:06d}.mp4", off + 3 * c + k)
        _csv(d / "annotations" / f"{split}.csv", rows)
    return d


def make_rareact(root: Path) -> Path:
    """Four actions; each has one positive, and the clips mix negatives and hard negatives."""
    d = root / "rareact"
    actions = (("cut", "phone"), ("wash", "phone"), ("cut", "shoe"), ("blend", "book"))
    plan = [
        (0, "v0", 1),
        (0, "v1", 0),
        (1, "v2", 1),
        (1, "v2", 2),
        (2, "v3", 1),
        (2, "v4", 0),
        (3, "v5", 1),
        (3, "v6", 3),
    ]
    rows = []
    for i, (cid, vid, ann) in enumerate(plan):
        verb, noun = actions[cid]
        rows.append(
            {
                "id": i,
                "video_id": vid,
                "start": 0,
                "end": 2,
                "class_id": cid,
                "verb": verb,
                "noun": noun,
                "annotation": ann,
            }
        )
    for vid in sorted({v for _, v, _ in plan}):
        clip(d / "videos" / f"{vid}.mp4", 80 + int(vid[1:]))
    _csv(d / "rareact.csv", rows)
    return d


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "msvd_qa": make_msvd_qa,
    "msrvtt_qa": make_msrvtt_qa,
    "ivqa": make_ivqa,
    "nextqa_oe": make_nextqa_oe,
    "nextqa_mc": make_nextqa_mc,
    "star": make_star,
    "vatex": make_vatex,
    "youcook2": make_youcook2,
    "kinetics700": make_kinetics700,
    "rareact": make_rareact,
}
