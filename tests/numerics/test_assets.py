"""Offline assets: packaged weights and data are found; the SmolLM2 GGUF converts to a valid HF dir."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from flamingo_eval.errors import UserError
from flamingo_eval.models import assets


def test_efficientnet_weights_file() -> None:
    path = assets.efficientnet_lite0_weights()
    assert path.is_file() and path.suffix == ".pth" and path.stat().st_size > 10_000_000


def test_easyvqa_layout() -> None:
    root = assets.easyvqa_root()
    questions = json.loads((root / "test" / "questions.json").read_text())
    text, answer, image_id = questions[0]
    assert isinstance(text, str) and isinstance(image_id, int)
    answers = (root / "answers.txt").read_text().split()
    assert answer in answers and len(answers) == 13
    assert (root / "test" / "images" / f"{image_id}.png").is_file()


def test_missing_package_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="make install"):
        assets.smollm2_dir()
    with pytest.raises(UserError, match="make install"):
        assets.easyvqa_root()


def test_cache_root_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    assert assets.cache_root() == tmp_path
    assert assets.cache_root(tmp_path / "x") == tmp_path / "x"


@pytest.mark.slow
def test_smollm2_dir_round_trip() -> None:
    """Converts once into the user's cache (reused across runs), then checks the HF dir loads."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    path = assets.smollm2_dir()
    start = time.perf_counter()
    assert assets.smollm2_dir() == path
    assert time.perf_counter() - start < 0.5  # a cached call only reads a small JSON file
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (path / name).is_file(), name
    assert not list(path.parent.glob(".smollm2-135m-instruct.*"))  # no temp dirs left behind

    config = json.loads((path / "config.json").read_text())
    assert (
        config["model_type"] == "llama" and config["num_hidden_layers"] == 30 and config["hidden_size"] == 576
    )
    tok = AutoTokenizer.from_pretrained(path)
    model = LlamaForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1] :])
