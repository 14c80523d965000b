"""Multi-frame media in the model: our perceiver vs OpenFlamingo 2.0.1's ``PerceiverResampler`` for F > 1.

The fixture (tools/make_perceiver_fixtures.py) holds one seeded reference resampler with ``frame_embs``
(``max_num_frames=8``), inputs (b, T, F, v, D) for F in {1, 4, 8}, and the reference outputs with and
without the per-frame embedding. open_flamingo is not needed here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flamingo_eval.errors import UserError
from flamingo_eval.models.flamingo import FlamingoConfig, PerceiverResampler

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "perceiver"
TOL = 1e-5  # different kernels (SDPA vs einsum + softmax) give last-bit differences only


def _ours(with_embs: bool) -> PerceiverResampler:
    from safetensors.torch import load_file

    c = json.loads((ROOT / "expected.json").read_text())["config"]
    cfg = FlamingoConfig(perceiver_depth=c["depth"], perceiver_heads=c["heads"], perceiver_dim_head=c["dim_head"],
                         num_latents=c["num_latents"], perceiver_ff_mult=c["ff_mult"],
                         max_num_frames=c["max_num_frames"] if with_embs else None)
    model = PerceiverResampler(c["dim"], cfg).eval()
    state = load_file(str(ROOT / "weights.safetensors"))
    if not with_embs:
        state.pop("frame_embs")
    model.load_state_dict(state, strict=True)  # same parameter names as OpenFlamingo's resampler
    return model


@pytest.fixture(scope="module")
def expected() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(ROOT / "expected.safetensors"))


@pytest.mark.parametrize("with_embs", [True, False], ids=["frame_embs", "no_frame_embs"])
@pytest.mark.parametrize("frames", [1, 4, 8])
def test_perceiver_matches_openflamingo(frames: int, with_embs: bool, expected: dict[str, torch.Tensor]) -> None:
    x = expected[f"x_F{frames}"]  # (b, T, F, v, D): our items are OpenFlamingo's (b, T) media
    want = expected[f"y_F{frames}_{'with' if with_embs else 'without'}"]  # (b, T, N, D)
    with torch.no_grad():
        got = _ours(with_embs)(x.flatten(0, 1)).view(want.shape)
    diff = (got - want).abs().max().item()
    assert diff <= TOL, f"F={frames}, frame_embs={with_embs}: max abs difference {diff:.2e}"


def test_frame_embeddings_matter_and_images_are_frame_zero(expected: dict[str, torch.Tensor]) -> None:
    assert (expected["y_F8_with"] - expected["y_F8_without"]).abs().max() > 1e-2  # the test can fail
    model = _ours(True)
    x = expected["x_F1"].flatten(0, 1)  # (I, 1, v, D)
    with torch.no_grad():  # a 3-d input (I, V, D) is an image: the same as one frame
        assert torch.equal(model(x[:, 0]), model(x))


def test_more_frames_than_frame_embeddings_is_one_clear_error(expected: dict[str, torch.Tensor]) -> None:
    x = torch.zeros(1, 9, 4, 32)
    with pytest.raises(UserError, match=r"9 frames.*at most 8.*frames.count=8"):
        _ours(True)(x)


def test_checkpoint_with_frame_embs_gives_the_perceiver_one(tmp_path: Path, tiny_model) -> None:
    """An Otter-style checkpoint (``perceiver.frame_embs``) loads into a model built without them."""
    from flamingo_eval.config_load import compose_config
    from flamingo_eval.models.build import build_model
    from flamingo_eval.models.checkpoints import load_flamingo_checkpoint

    src = tiny_model.model
    bridge = {k: v for k, v in src.state_dict().items() if k.startswith(("perceiver.", "xattn."))}
    embs = torch.randn(6, src.perceiver.latents.shape[1], generator=torch.Generator().manual_seed(3))
    state = {}
    for k, v in bridge.items():  # OpenFlamingo's names: blocks live inside the LM's layers
        if k.startswith("xattn."):
            idx, rest = k[len("xattn."):].split(".", 1)
            k = f"lang_encoder.model.layers.{idx}.gated_cross_attn_layer.{rest}"
        state[k] = v
    state["perceiver.frame_embs"] = embs
    state["lang_encoder.model.embed_tokens.weight"] = src.lang.input_embeddings().weight.detach().clone()
    torch.save(state, tmp_path / "checkpoint.pt")
    fresh = build_model(compose_config("easyvqa", "tiny").model).model
    assert fresh.perceiver.frame_embs is None
    load_flamingo_checkpoint(fresh, tmp_path / "checkpoint.pt")
    assert fresh.perceiver.frame_embs is not None and torch.equal(fresh.perceiver.frame_embs, embs)
    assert fresh.cfg.max_num_frames == 6
    pixels = torch.zeros(2, 4, 3, 32, 32)
    with torch.no_grad():
        assert fresh.encode_media(pixels).shape == (2, *src.perceiver.latents.shape)
