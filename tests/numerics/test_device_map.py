"""A model split into pipeline stages computes what the unsplit model computes.

There is no second device on the CI machine, so the two stages are both ``cpu`` (``model.devices``):
every stage-crossing code path still runs (activations handed over, per-stage copies of masks, positions,
image indices and memos, media K/V and KV caches created per layer, beam reorders per layer), only the
copies are no-ops. ``tools/gpu_check.sh`` runs the same comparison across a real GPU + CPU split.
"""

from __future__ import annotations

import pytest
import torch

from flamingo_eval.config_load import compose_config
from flamingo_eval.models.build import build_model
from flamingo_eval.models.cache import KVCache
from flamingo_eval.models.decoders.base import AttnInputs
from flamingo_eval.types import GenerateRequest, InterleavedPrompt, RankRequest
from tests.conftest import easyvqa_data

IMGS = sorted((easyvqa_data() / "test" / "images").glob("*.png"))


def _prompt(n: int, q: int) -> InterleavedPrompt:
    text = "".join(f"<image>Question:what color is {i}? Short answer:blue<|endofchunk|>" for i in range(n))
    return InterleavedPrompt(text + "<image>Question:what shape? Short answer:",
                             tuple(str(IMGS[20 + i]) for i in range(n)) + (str(IMGS[q]),))


@pytest.fixture(scope="module")
def split_model():
    cfg = compose_config("easyvqa", "tiny", ["model.device_map=[0-0,1-1]", "model.devices=[cpu,cpu]"]).model
    return build_model(cfg)


def test_split_places_each_layer_on_its_stage(split_model):
    stages = split_model.model.stages
    assert stages is not None and stages.layers == (0, 1)
    assert split_model.placement == "cpu: vision, perceiver, io, layer 0; cpu: layer 1"


def test_split_forward_equals_unsplit(tiny_model, split_model, monkeypatch):
    handed_over = []
    real_to = AttnInputs.to
    monkeypatch.setattr(AttnInputs, "to", lambda self, d: handed_over.append(d) or real_to(self, d))
    prompts = [_prompt(2, 0), _prompt(0, 1), _prompt(3, 2)]
    outs = []
    for m in (tiny_model, split_model):
        ids, valid = m._left_pad([m._encode(p.text) for p in prompts])
        outs.append(m.model(ids, valid, KVCache(2), m._media_state(prompts)))
    # Same weights, same shapes, same device: only summation order could differ, and it does not here.
    assert (outs[0] - outs[1]).abs().max().item() <= 1e-6
    assert len(handed_over) == 2  # stage 0 and stage 1 each got their own copy of the inputs


@pytest.mark.parametrize("beams", [1, 3])
def test_split_generate_and_rank_equal_unsplit(tiny_model, split_model, beams):
    reqs = [GenerateRequest(_prompt(n, q), max_new_tokens=4, num_beams=beams) for q, n in enumerate([0, 2, 3, 1])]
    assert split_model.generate(reqs) == tiny_model.generate(reqs)
    if beams == 1:
        rank = [RankRequest(_prompt(n, q), ("blue", "red square", "no"), True) for q, n in enumerate([1, 2])]
        a, b = torch.tensor(split_model.rank(rank)), torch.tensor(tiny_model.rank(rank))
        assert (a - b).abs().max().item() <= 1e-5
