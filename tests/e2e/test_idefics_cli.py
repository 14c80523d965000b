"""IDEFICS through the real CLI: one line without weights; a full run on a tiny fixture checkpoint; its prompts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flamingo_eval.cli import main
from flamingo_eval.config_load import compose_config
from flamingo_eval.prompts.builder import build_prompt
from flamingo_eval.prompts.extractors import extract_caption_line, extract_vqa_line
from flamingo_eval.types import Sample

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "idefics" / "resampler-qk-i1"
IMG = "<fake_token_around_image><image><fake_token_around_image>"


def test_without_weights_one_line_and_no_download(tmp_path: Path) -> None:
    """Offline or not, an absent model is one line naming the download and the flag; nothing is fetched."""
    model = "idefics-9b"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HOME=str(tmp_path / "hf"), CI="true")  # an empty hub cache
    out = subprocess.run([sys.executable, "-m", "flamingo_eval", "run", "easyvqa", "--model", model, "--shots", "0",
                          "--limit", "2", "--output", str(tmp_path / "run")], capture_output=True, text=True,
                         timeout=300, env=env, cwd=tmp_path)
    err = out.stderr.strip()
    assert out.returncode == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    assert f"HuggingFaceM4/{model}" in err and "model.lm.path=DIR" in err and "huggingface-cli download" in err
    assert not (tmp_path / "hf" / "hub").exists() or not any((tmp_path / "hf" / "hub").iterdir())


def test_run_on_a_tiny_idefics_checkpoint(tmp_path: Path) -> None:
    """The runner, samplers and metric are unchanged: an IDEFICS directory runs like any model."""
    run = tmp_path / "run"
    assert main(["run", "easyvqa", "--model", "idefics-9b", "--shots", "0", "4", "--limit", "4", "--output", str(run),
                 f"model.lm.path={FIXTURE}", "model.precision=fp32", "model.device=cpu"]) == 0
    record = json.loads((run / "record.json").read_text())
    assert record["config"]["prompts"]["name"] == "idefics"
    lines = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and all("raw_output" in x or "output" in x or "prediction" in x for x in lines)


def test_idefics_configs_pick_the_idefics_prompts() -> None:
    for model in ("idefics-9b", "idefics-9b-instruct", "idefics-80b", "idefics-80b-instruct"):
        cfg = compose_config("vqav2", model)
        assert (cfg.prompts.name, cfg.model.architecture, cfg.model.precision) == ("idefics", "idefics", "bf16")
        assert cfg.model.lm.path == f"HuggingFaceM4/{model}"
    assert compose_config("vqav2", "idefics-9b", ["prompts=flamingo"]).prompts.name == "flamingo"
    assert compose_config("vqav2", "mini").prompts.name == "openflamingo"


def test_idefics_prompt_text() -> None:
    t = compose_config("vqav2", "idefics-9b").prompts.templates["vqa"]
    demo = Sample(id="d", media=("a.jpg",), fields={"question": "What color?"}, references=("red",))
    query = Sample(id="q", media=("b.jpg",), fields={"question": "How many?"}, references=("2",))
    p = build_prompt(t, [demo], query)
    assert p.text == ("Instruction: provide an answer to the question. Use the image to answer.\n"
                      f"{IMG}Question: What color? Answer: red\n{IMG}Question: How many? Answer:")
    assert p.media == ("a.jpg", "b.jpg")


@pytest.mark.parametrize("raw,want", [(" yes\nQuestion: is it", "yes"), ("two, three\n", "two"),
                                      ("red Answer", "red"), ("\n", "")])
def test_vqa_line_extractor(raw: str, want: str) -> None:
    assert extract_vqa_line(raw) == want


def test_caption_line_extractor() -> None:
    assert extract_caption_line(' a "dog" on a bed\nCaption: more') == "a dog on a bed"
    assert extract_caption_line("a cat Caption: x") == "a cat"
