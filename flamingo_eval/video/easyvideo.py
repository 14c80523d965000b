"""easyvideo: a deterministic offline video QA benchmark of moving coloured shapes (the video ``easyvqa``).

Each clip is 64 x 64 pixels, 16 frames at 8 fps (2 s), H.264 in MP4, with one question whose answer needs
more than one frame:

* ``direction`` — "which way does the red circle move?" (left / right / up / down): one frame shows where a
  shape is, not where it goes;
* ``color_change`` — "what color does the blue square become?" (a colour): the first frames name the shape,
  the last ones hold the answer;
* ``count_enter`` — "how many shapes enter?" (1 / 2 / 3): shapes slide in from outside the frame while
  another may sit still; the last frame cannot tell the two apart;
* ``grow_shrink`` — "does the green triangle grow or shrink?" (grow / shrink).

Determinism: a clip's scene (shapes, colours, paths, question, answer) is a pure function of (split,
index) through a SHA-256-seeded ``random.Random``; frames are drawn with integer arithmetic only, so the
questions, answers and raw RGB frames are identical on every machine (``MANIFEST.json`` records their
SHA-256; the tests pin them). The MP4 bytes depend on the bundled libx264 build, so they are not pinned.

Layout (``generate(root)``; :func:`easyvideo_root` keeps one copy in the asset cache)::

    <root>/train_qa.json, test_qa.json   [{id, video_id, question, answer, type}] (the MSVD-QA layout)
    <root>/videos/<video_id>.mp4
    <root>/answers.txt, MANIFEST.json
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flamingo_eval.errors import UserError

__all__ = ["ANSWERS", "N_TEST", "N_TRAIN", "Scene", "easyvideo_root", "generate", "qa_rows", "render", "scene"]

VERSION = "1"
SIZE, FRAMES, FPS = 64, 16, 8
N_TRAIN, N_TEST = 2400, 600
BACKGROUND = (236, 236, 236)
COLORS = {"red": (220, 30, 30), "green": (30, 170, 50), "blue": (30, 70, 230), "yellow": (235, 205, 20),
          "purple": (140, 50, 190), "orange": (245, 130, 20)}
SHAPES = ("circle", "square", "triangle")
KINDS = ("direction", "color_change", "count_enter", "grow_shrink")
ANSWERS = ("left", "right", "up", "down", *COLORS, "1", "2", "3", "grow", "shrink")
DIRNAME = f"easyvideo-v{VERSION}"
_DONE = "MANIFEST.json"  # written last: its presence marks a complete dataset


@dataclass(frozen=True)
class Sprite:
    """One shape over the clip: radius and position per frame, colour per frame (all integers)."""

    shape: str
    colors: tuple[str, ...]
    xs: tuple[int, ...]
    ys: tuple[int, ...]
    radii: tuple[int, ...]


@dataclass(frozen=True)
class Scene:
    """A clip's content and its question."""

    id: str
    kind: str
    question: str
    answer: str
    sprites: tuple[Sprite, ...]


def _rng(split: str, index: int) -> random.Random:
    digest = hashlib.sha256(f"easyvideo/v{VERSION}/{split}/{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def _path(a: int, b: int) -> tuple[int, ...]:
    """Integer positions from a to b over the frames (floor division: the same on every machine)."""
    return tuple(a + (b - a) * f // (FRAMES - 1) for f in range(FRAMES))


def _still(shape: str, color: str, x: int, y: int, r: int) -> Sprite:
    return Sprite(shape, (color,) * FRAMES, (x,) * FRAMES, (y,) * FRAMES, (r,) * FRAMES)


def scene(split: str, index: int) -> Scene:
    """The scene of clip ``index`` of ``split`` (a pure function; kinds rotate with the index)."""
    rng = _rng(split, index)
    kind = KINDS[index % len(KINDS)]
    shape, color = rng.choice(SHAPES), rng.choice(list(COLORS))
    sid = f"{split}-{index:05d}"
    if kind == "direction":
        way = rng.choice(("left", "right", "up", "down"))
        r, travel = rng.randint(6, 9), rng.randint(22, 34)
        lo, hi = r + 1, SIZE - r - 2
        a, b = rng.randint(lo, hi - travel), rng.randint(lo, hi)
        a0, a1 = (a + travel, a) if way in ("left", "up") else (a, a + travel)
        xs, ys = (_path(a0, a1), (b,) * FRAMES) if way in ("left", "right") else ((b,) * FRAMES, _path(a0, a1))
        return Scene(sid, kind, f"which way does the {color} {shape} move?", way,
                     (Sprite(shape, (color,) * FRAMES, xs, ys, (r,) * FRAMES),))
    if kind == "color_change":
        new = rng.choice([c for c in COLORS if c != color])
        switch = rng.randint(5, 10)
        r, x, y = rng.randint(8, 12), rng.randint(16, SIZE - 17), rng.randint(16, SIZE - 17)
        colors = tuple(color if f < switch else new for f in range(FRAMES))
        return Scene(sid, kind, f"what color does the {color} {shape} become?", new,
                     (Sprite(shape, colors, (x,) * FRAMES, (y,) * FRAMES, (r,) * FRAMES),))
    if kind == "count_enter":
        n = rng.randint(1, 3)
        cells = rng.sample(_CELLS, n)  # distinct resting cells: entering shapes never overlap
        sprites = [_entering(rng, cx, cy) for cx, cy in cells]
        if rng.random() < 0.6:  # a shape present throughout: only motion tells it from the newcomers
            sprites.insert(0, _still(rng.choice(SHAPES), rng.choice(list(COLORS)), 32, 32, 6))
        return Scene(sid, kind, "how many shapes enter?", str(n), tuple(sprites))
    grow = rng.random() < 0.5
    small, big = rng.randint(4, 7), rng.randint(14, 20)
    radii = _path(small, big) if grow else _path(big, small)
    x, y = rng.randint(22, SIZE - 23), rng.randint(22, SIZE - 23)
    return Scene(sid, kind, f"does the {color} {shape} grow or shrink?", "grow" if grow else "shrink",
                 (Sprite(shape, (color,) * FRAMES, (x,) * FRAMES, (y,) * FRAMES, radii),))


_CELLS = [(x, y) for y in (12, 32, 52) for x in (12, 32, 52) if (x, y) != (32, 32)]
"""Resting places of entering shapes: a 3 x 3 grid around the centre, where a still shape may sit."""


def _entering(rng: random.Random, cx: int, cy: int) -> Sprite:
    """A shape sliding in from the edge nearest its cell (its path crosses no other cell) and stopping there."""
    r = rng.randint(5, 7)
    sides = ([("x", -r - 2)] if cx == 12 else [("x", SIZE + r + 1)] if cx == 52 else []) + \
        ([("y", -r - 2)] if cy == 12 else [("y", SIZE + r + 1)] if cy == 52 else [])
    axis, outside = rng.choice(sides)
    arrive = rng.randint(FRAMES // 2, FRAMES - 2)
    rest = cx if axis == "x" else cy
    along = tuple(outside + (rest - outside) * min(f, arrive) // arrive for f in range(FRAMES))
    xs, ys = (along, (cy,) * FRAMES) if axis == "x" else ((cx,) * FRAMES, along)
    return Sprite(rng.choice(SHAPES), (rng.choice(list(COLORS)),) * FRAMES, xs, ys, (r,) * FRAMES)


_YY, _XX = np.mgrid[0:SIZE, 0:SIZE]


def _mask(shape: str, x: int, y: int, r: int) -> np.ndarray:
    dx, dy = _XX - x, _YY - y
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    return (dy >= -r) & (dy <= r) & (2 * np.abs(dx) <= dy + r)  # apex up, base 2r wide


def render(sc: Scene) -> np.ndarray:
    """(FRAMES, SIZE, SIZE, 3) uint8 RGB frames of a scene (integer arithmetic only)."""
    out = np.empty((FRAMES, SIZE, SIZE, 3), np.uint8)
    out[:] = BACKGROUND
    for f in range(FRAMES):
        for sp in sc.sprites:
            out[f][_mask(sp.shape, sp.xs[f], sp.ys[f], sp.radii[f])] = COLORS[sp.colors[f]]
    return out


def _encode(frames: np.ndarray, path: Path) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "14", "threads": "1"}  # one thread: reproducible bytes
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def qa_rows(split: str, n: int) -> list[dict[str, str]]:
    """The split's question file rows: ``{id, video_id, question, answer, type}`` of its first ``n`` clips."""
    return [{"id": sc.id, "video_id": sc.id, "question": sc.question, "answer": sc.answer, "type": sc.kind}
            for sc in (scene(split, i) for i in range(n))]


def generate(root: str | os.PathLike[str], n_train: int = N_TRAIN, n_test: int = N_TEST) -> dict[str, Any]:
    """Write the dataset (see the module docstring) into ``root``; returns the manifest.

    The first ``k`` clips of a split are the same whatever ``n_train`` / ``n_test`` are (tests use a few).
    """
    out = Path(root)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    questions, frames = hashlib.sha256(), hashlib.sha256()
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            sc = scene(split, i)
            pixels = render(sc)
            frames.update(pixels.tobytes())
            _encode(pixels, out / "videos" / f"{sc.id}.mp4")
        text = json.dumps(qa_rows(split, n), indent=0)
        questions.update(text.encode())
        (out / f"{split}_qa.json").write_text(text, encoding="utf-8")
    (out / "answers.txt").write_text("\n".join(ANSWERS) + "\n", encoding="utf-8")
    manifest = {"version": VERSION, "n_train": n_train, "n_test": n_test, "size": SIZE, "frames": FRAMES,
                "fps": FPS, "questions_sha256": questions.hexdigest(), "frames_sha256": frames.hexdigest()}
    (out / _DONE).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def easyvideo_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The full easyvideo dataset in the asset cache, generated on first use (about half a minute).

    Generated into a temporary sibling and renamed into place, so readers never see half a dataset and
    concurrent first uses are safe.

    Raises:
        UserError: the cache is not writable.
    """
    from flamingo_eval.models.assets import CACHE_ENV, cache_root

    target = cache_root(cache_dir) / DIRNAME
    if _complete(target):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{DIRNAME}.", dir=target.parent))
    except OSError as err:
        raise UserError(f"cannot write the asset cache {target.parent} ({err}); set ${CACHE_ENV} to a writable "
                        "directory") from None
    try:
        generate(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not _complete(target):  # lost a race only if the winner is complete
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _complete(root: Path) -> bool:
    try:
        manifest = json.loads((root / _DONE).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("version") == VERSION and manifest.get("n_train") == N_TRAIN
