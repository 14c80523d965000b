"""A custom IDEFICS directory: its preprocessor_config.json decides the pixels (and is recorded); its name is the
directory's unless ``model.name=`` says otherwise."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from flamingo_eval.config_load import compose_config
from flamingo_eval.errors import UserError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "idefics" / "resampler-qk-i1"
IMAGES = Path(__file__).resolve().parents[1] / "fixtures" / "parity" / "images"
MEAN, STD = [0.5, 0.25, 0.75], [0.2, 0.4, 0.3]


def _custom(tmp_path: Path) -> Path:
    d = tmp_path / "my-idefics"
    shutil.copytree(FIXTURE, d)
    pre = json.loads((d / "preprocessor_config.json").read_text())
    pre.update(image_mean=MEAN, image_std=STD)
    (d / "preprocessor_config.json").write_text(json.dumps(pre))
    return d


def test_pixels_follow_the_directory_image_processor(tmp_path: Path) -> None:
    from PIL import Image
    from transformers import IdeficsImageProcessor

    from flamingo_eval.models.build import build_model

    d = _custom(tmp_path)
    cfg = compose_config("easyvqa", "idefics-9b", [f"model.lm.path={d}", "model.precision=fp32",
                                                   "model.device=cpu"]).model
    assert cfg.name == "my-idefics"  # named after its directory, not idefics-9b
    assert (cfg.vision.options["image_mean"], cfg.vision.options["image_std"]) == (MEAN, STD)  # recorded
    model = build_model(cfg)
    reference = IdeficsImageProcessor.from_pretrained(str(d))
    for name in ("img0.png", "img3.png"):
        img = Image.open(IMAGES / name).convert("RGB")
        ours, theirs = model.preprocess(img), reference(img, return_tensors="pt")[0]
        # Same uint8 resize; normalisation in another order of float operations: last-bit differences only.
        assert torch.allclose(ours, theirs, atol=1e-5, rtol=0), (ours - theirs).abs().max()
    clip = IdeficsImageProcessor.from_pretrained(str(FIXTURE))(img, return_tensors="pt")[0]
    assert (model.preprocess(img) - clip).abs().max() > 0.1  # the CLIP statistics would be other pixels


def test_model_name_and_bad_processor_values(tmp_path: Path) -> None:
    d = _custom(tmp_path)
    assert compose_config("easyvqa", "idefics-9b", [f"model.lm.path={d}", "model.name=med-idefics"]).model.name \
        == "med-idefics"
    pre = json.loads((d / "preprocessor_config.json").read_text())
    (d / "preprocessor_config.json").write_text(json.dumps({**pre, "image_size": 64}))
    with pytest.raises(UserError, match=r"image_size 64, but config\.json's vision_config\.image_size is 32"):
        compose_config("easyvqa", "idefics-9b", [f"model.lm.path={d}"])
    (d / "preprocessor_config.json").write_text(json.dumps({**pre, "image_std": [0.2, 0.0, 0.3]}))
    with pytest.raises(UserError, match=r"image_std must be 3 numbers"):
        compose_config("easyvqa", "idefics-9b", [f"model.lm.path={d}"])
