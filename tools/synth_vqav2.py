"""A synthetic VQAv2 split of real size in the official file layout (for ``tools/bench_scale.py``).

Writes, under ``ROOT/vqav2/``, exactly the files the ``vqav2`` card reads::

    v2_OpenEnded_mscoco_{train,val}2014_questions.json   {"questions": [{question_id, image_id, question}]}
    v2_mscoco_{train,val}2014_annotations.json           {"annotations": [{question_id, image_id, question_type,
                                                           answer_type, multiple_choice_answer, answers: [10 x
                                                           {answer, answer_confidence, answer_id}]}]}
    train2014/COCO_train2014_<id:012d>.jpg, val2014/...  one file per image id

Default sizes are VQAv2's: train 443,757 questions over 82,783 images, val 214,354 over 40,504. The
annotation files have the official fields and about the official size (the real train file is ~330 MB),
so load time and memory are realistic. Images are 8x8 JPEGs: a palette of 64 distinct files, every image
name a hard link to one of them (fast to write, no disk blocks per image; a reader sees real, distinct-named
image files). Questions and answers are drawn from small vocabularies with a fixed seed.

Writing is done once: a ``.complete`` stamp holding the sizes makes a second call with the same sizes a
no-op (``--cache-dir`` / ``ROOT`` reused across bench runs)::

    .venv/bin/python -m tools.synth_vqav2 ROOT [--train-questions N] [--val-questions N] ...
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import time
from pathlib import Path

REAL = {"train": (443_757, 82_783), "val": (214_354, 40_504)}
COCO = {"train": "train2014", "val": "val2014"}
PALETTE = 64
WORDS = ["red", "blue", "green", "yes", "no", "2", "3", "white", "black", "dog", "cat", "man", "table",
         "pizza", "tennis", "frisbee", "grass", "left", "right", "wood"]
QUESTIONS = ["what color is the {}?", "is there a {} in the picture?", "how many {}s are there?",
             "what is the {} doing?", "where is the {}?", "what is on the {}?"]


def _palette(d: Path) -> list[Path]:
    from PIL import Image

    d.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(PALETTE):
        p = d / f"p{i:02d}.jpg"
        Image.new("RGB", (8, 8), ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)).save(p, quality=90)
        out.append(p)
    return out


def _images(d: Path, split: str, n_images: int, offset: int, palette: list[Path]) -> None:
    img_dir = d / COCO[split]
    img_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        target = img_dir / f"COCO_{COCO[split]}_{offset + i:012d}.jpg"
        if not target.exists():
            os.link(palette[(offset + i) % PALETTE], target)


def _split(d: Path, split: str, n_q: int, n_images: int, offset: int, rng: random.Random) -> None:
    questions, annotations = [], []
    for i in range(n_q):
        image_id = offset + i % n_images
        qid = image_id * 1000 + i // n_images  # VQAv2 question ids are image_id * 1000 + k
        noun = rng.choice(WORDS)
        questions.append({"image_id": image_id, "question": rng.choice(QUESTIONS).format(noun), "question_id": qid})
        top = rng.choice(WORDS)
        answers = [{"answer": top if j < 6 else rng.choice(WORDS), "answer_confidence": rng.choice(["yes", "maybe"]),
                    "answer_id": j + 1} for j in range(10)]
        annotations.append({"question_type": "what", "multiple_choice_answer": top, "answers": answers,
                            "image_id": image_id, "answer_type": "other", "question_id": qid})
    info = {"description": "synthetic VQAv2-format split (flamingo-eval bench)", "data_subtype": COCO[split]}
    (d / f"v2_OpenEnded_mscoco_{COCO[split]}_questions.json").write_text(
        json.dumps({"info": info, "task_type": "Open-Ended", "data_type": "mscoco", "questions": questions}))
    (d / f"v2_mscoco_{COCO[split]}_annotations.json").write_text(
        json.dumps({"info": info, "data_type": "mscoco", "annotations": annotations}))


def generate(root: Path, sizes: dict[str, tuple[int, int]] | None = None, seed: int = 0) -> Path:
    """Write (once) the synthetic split under ``root/vqav2``; returns ``root`` (the ``--data-root``)."""
    sizes = sizes or REAL
    d = root / "vqav2"
    stamp = d / ".complete"
    want = json.dumps({k: list(v) for k, v in sorted(sizes.items())} | {"seed": seed, "version": 1})
    if stamp.exists() and stamp.read_text() == want:
        return root
    if d.exists():
        shutil.rmtree(d)
    palette = _palette(d / ".palette")
    rng = random.Random(seed)
    offset = 0
    for split in ("train", "val"):
        n_q, n_images = sizes[split]
        _images(d, split, n_images, offset, palette)
        _split(d, split, n_q, n_images, offset, rng)
        offset += 1_000_000  # disjoint image ids between splits, as COCO's
    stamp.write_text(want)
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--train-questions", type=int, default=REAL["train"][0])
    ap.add_argument("--train-images", type=int, default=REAL["train"][1])
    ap.add_argument("--val-questions", type=int, default=REAL["val"][0])
    ap.add_argument("--val-images", type=int, default=REAL["val"][1])
    a = ap.parse_args()
    t0 = time.perf_counter()
    generate(a.root, {"train": (a.train_questions, a.train_images), "val": (a.val_questions, a.val_images)})
    print(f"{a.root}/vqav2 ready in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
