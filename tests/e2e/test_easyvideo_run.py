"""easyvideo end to end with the tiny model: engine == reference path, `score` re-scores, decoding counted.

Runs on a small dataset written by the real generator (the first clips of each split: the same clips as the
full dataset's), so the test does not depend on the asset cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flamingo_eval.cli import main
from flamingo_eval.types import FrameSampling, GenerateRequest, InterleavedPrompt, RankRequest, VideoRef
from flamingo_eval.video import media_key


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    from flamingo_eval.video.easyvideo import generate

    out = tmp_path_factory.mktemp("easyvideo")
    generate(out, n_train=12, n_test=4)
    return out


def _lines(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "predictions.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(root: Path, tmp_path_factory) -> dict[str, tuple[Path, list[dict], dict]]:
    """The same 0/4-shot run with the fast engine and with the reference path."""
    out = {}
    for engine in ("fast", "reference"):
        run = tmp_path_factory.mktemp(engine)
        assert main(["run", "easyvideo", f"benchmarks.adapter_args.root={root}", f"model.engine={engine}",
                     "--model", "tiny", "--shots", "0", "4", "--output", str(run), "--overwrite"]) == 0
        out[engine] = (run, _lines(run), json.loads((run / "record.json").read_text()))
    return out


def test_easyvideo_engine_equals_reference_and_score_rescores(root: Path, runs, capsys) -> None:
    (run, fast, rec), (_, ref, ref_rec) = runs["fast"], runs["reference"]
    assert len(fast) == 8 and [(x["sample_id"], x["demo_ids"], x["prompt_hash"]) for x in fast] == \
        [(x["sample_id"], x["demo_ids"], x["prompt_hash"]) for x in ref]
    assert [x["raw_output"] for x in fast] == [x["raw_output"] for x in ref]
    assert rec["benchmark"]["id"] == "easyvideo" and rec["config"]["benchmarks"]["frames"]["count"] == 8
    distinct = {x["sample_id"] for x in fast} | {d for x in fast if x["shots"] == 4 for d in x["demo_ids"]}
    assert rec["media"]["videos_decoded"] == len(distinct)  # each clip decoded once per run by the engine
    assert rec["media"]["frames_decoded"] == 8 * len(distinct) and rec["media"]["short_clips"] == 0
    assert ref_rec["media"]["videos_decoded"] > len(distinct)  # the reference re-decodes per slot and batch
    capsys.readouterr()
    assert main(["score", "easyvideo", "--predictions", str(run / "predictions.jsonl"),
                 f"benchmarks.adapter_args.root={root}"]) == 0
    scored = json.loads(capsys.readouterr().out)
    for mine, theirs in zip(scored["results"], rec["results"]):
        assert mine["trials"][0]["value"] == pytest.approx(theirs["trials"][0]["value"], abs=1e-9)


def test_frames_override_changes_the_prompt_hash_and_the_work(root: Path, runs, tmp_path: Path) -> None:
    out = tmp_path / "f4"
    assert main(["run", "easyvideo", f"benchmarks.adapter_args.root={root}", "benchmarks.frames.count=4",
                 "--model", "tiny", "--shots", "0", "--output", str(out)]) == 0
    rec = json.loads((out / "record.json").read_text())
    assert rec["media"]["frames_decoded"] == 4 * rec["media"]["videos_decoded"]
    eight = [x["prompt_hash"] for x in runs["fast"][1] if x["shots"] == 0]
    assert [x["prompt_hash"] for x in _lines(out)] != eight  # the sampling is part of a video's identity


def test_video_media_in_the_engine(root: Path, tiny_model) -> None:
    """A video is one slot: F frames encoded as one item, once per distinct clip, beside images; the engine
    equals the reference path (fixed-size and mixed frame counts) on generate and rank."""
    from flamingo_eval.models.reference import ReferenceEvalModel

    m = tiny_model
    v = [VideoRef(str(root / "videos" / f"train-{i:05d}.mp4")) for i in range(3)]
    v4 = VideoRef(v[0].path, frames=FrameSampling.uniform(4))
    image = str(Path(__file__).resolve().parents[1] / "fixtures" / "parity" / "images" / "img0.png")
    demo = "<image>Question:what? Short answer:left<|endofchunk|>"
    prompts = [InterleavedPrompt(demo * 2 + "<image>Question:which way? Short answer:", (v[0], v[1], v[2])),
               InterleavedPrompt(demo + "<image>Question:which way? Short answer:", (v[1], v[0])),
               InterleavedPrompt(demo * 2 + "<image>Question:what? Short answer:", (image, v4, v[2]))]
    m.latents.__init__(m.latents.max_bytes)  # type: ignore[misc]
    gen = m.generate([GenerateRequest(p, max_new_tokens=4, num_beams=3) for p in prompts])
    assert m.latents.encodes == 3 * 8 + 4 + 1  # three 8-frame clips, one 4-frame sampling, one image: once each
    with torch.inference_mode():
        direct = m.model.encode_media(torch.stack([m._pixels(v[0])]))[0]
    key = m._latent_key(media_key(v[0]))
    assert torch.allclose(m.latents.get(key), direct, atol=1e-5)  # batch composition: last bits only
    ref = ReferenceEvalModel(m.model, m.tokenizer, m.preprocess, model_id="tiny", fingerprint=m.fingerprint(),
                             batch_size=2)
    assert ref.generate([GenerateRequest(p, max_new_tokens=4, num_beams=3) for p in prompts]) == gen
    cands = ("left", "right", "up", "down")
    fast_scores = m.rank([RankRequest(p, cands) for p in prompts])
    ref_scores = ref.rank([RankRequest(p, cands) for p in prompts])
    assert torch.allclose(torch.tensor(fast_scores), torch.tensor(ref_scores), atol=1e-4)
