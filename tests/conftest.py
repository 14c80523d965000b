"""Shared fixtures: offline env, the tiny model (built once), a small VQAv2-format dataset."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["CI"] = os.environ.get("CI", "true")


def easyvqa_data() -> Path:
    spec = importlib.util.find_spec("easy_vqa")
    assert spec is not None and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@pytest.fixture(scope="session")
def tiny_model():
    from flamingo_eval.config_load import compose_config
    from flamingo_eval.models.build import build_model

    return build_model(compose_config("easyvqa", "tiny").model)


def make_vqav2(root: Path, n_train: int = 12, n_val: int = 6) -> Path:
    """A VQAv2-format dataset (official file names and fields) over real easy-vqa PNG photos."""
    from PIL import Image

    src = sorted((easyvqa_data() / "test" / "images").glob("*.png"))
    d = root / "vqav2"
    for _split, coco, n, offset in (("train", "train2014", n_train, 0), ("val", "val2014", n_val, 100)):
        (d / coco).mkdir(parents=True, exist_ok=True)
        questions, annotations = [], []
        for i in range(n):
            image_id = offset + i
            Image.open(src[image_id % len(src)]).convert("RGB").save(d / coco / f"COCO_{coco}_{image_id:012d}.jpg")
            qid = image_id * 10 + 1
            questions.append({"question_id": qid, "image_id": image_id, "question": f"what color is shape {i}?"})
            answers = [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1}
                       for j, a in enumerate(["blue"] * 4 + ["red"] * 3 + ["green"] * 3)]
            annotations.append({"question_id": qid, "image_id": image_id, "question_type": "what color",
                                "answer_type": "other", "multiple_choice_answer": "blue", "answers": answers})
        (d / f"v2_OpenEnded_mscoco_{coco}_questions.json").write_text(json.dumps({"questions": questions}))
        (d / f"v2_mscoco_{coco}_annotations.json").write_text(json.dumps({"annotations": annotations[::-1]}))
    return root


@pytest.fixture
def vqav2_root(tmp_path: Path) -> Path:
    return make_vqav2(tmp_path / "data")
