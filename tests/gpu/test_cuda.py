"""On the GPU: engine == reference path in fp32; bf16 within a stated tolerance of fp32; a model split over
the GPU and the CPU (``model.device_map``) equal to the unsplit one; fused SDPA kernels; images and
latents where they belong. ``tools/gpu_check.sh`` runs these (``--dry-run``: on the CPU)."""

from __future__ import annotations

import pytest
import torch

from flamingo_eval.config import LMCfg, ModelCfg, VisionCfg
from flamingo_eval.config_load import compose_config
from flamingo_eval.models.build import build_model
from flamingo_eval.models.cache import KVCache
from flamingo_eval.models.eval_model import FlamingoEvalModel
from flamingo_eval.models.reference import ReferenceEvalModel
from flamingo_eval.types import GenerateRequest, InterleavedPrompt, RankRequest

pytestmark = pytest.mark.gpu

BF16_TOL = 0.05
"""Max |log p(bf16) - log p(fp32)| over each position's 10 most likely tokens, the weights being the same
bf16 values in both runs (so only the arithmetic differs). Measured 0.011 on a CPU for this model; bf16
keeps 8 mantissa bits, so each matmul output is off by up to ~0.4%, compounding over 4 layers."""


def _prompt(images: list[str], n: int, q: int) -> InterleavedPrompt:
    text = "".join(f"<image>Question:what color is {i}? Short answer:blue<|endofchunk|>" for i in range(n))
    return InterleavedPrompt(text + "<image>Question:what shape? Short answer:", tuple(images[:n]) + (images[7 - q],))


def _tiny(device: str, tokenizer: str, *overrides: str) -> FlamingoEvalModel:
    return build_model(compose_config("easyvqa", "tiny", [f"model.device={device}", f"model.lm.tokenizer='{tokenizer}'",
                                                          *overrides]).model)


def _twin(m: FlamingoEvalModel, cls: type = ReferenceEvalModel) -> FlamingoEvalModel:
    return cls(m.model, m.tokenizer, m.preprocess, model_id=m.model_id, fingerprint=m.fingerprint(),
               batch_size=3, device=str(m.device), dtype=m.dtype)


def test_engine_equals_reference_fp32(device, tokenizer_path, images):
    m = _tiny(device, tokenizer_path)
    ref = _twin(m)
    for beams in (1, 3):
        reqs = [GenerateRequest(_prompt(images, n, q), max_new_tokens=4, num_beams=beams)
                for q, n in enumerate([0, 1, 5, 2])]
        assert m.generate(reqs) == ref.generate(reqs)
    cands = ("blue", "red square", "a green circle", "no")
    rank = [RankRequest(_prompt(images, n, q), cands, normalize_length=True) for q, n in enumerate([0, 3])]
    fast, slow = torch.tensor(m.rank(rank)), torch.tensor(ref.rank(rank))
    assert (fast - slow).abs().max().item() <= 1e-4  # fp32, different kernels and batch shapes


def _bench_like(device: str, tokenizer: str, precision: str) -> FlamingoEvalModel:
    """A small MPT Flamingo (ALiBi, cross-attention every layer) with random non-zero gates."""
    lm = {"model_type": "mpt", "d_model": 256, "n_heads": 8, "n_layers": 4, "expansion_ratio": 4,
          "max_seq_len": 2048, "attn_config": {"alibi": True}, "no_bias": True, "initializer_range": 0.02}
    cfg = ModelCfg(name="bf16-check", vision=VisionCfg("tiny_conv", {"width": 64, "num_tokens": 16}),
                   lm=LMCfg(source="random", tokenizer=tokenizer, config=lm),
                   flamingo={"cross_attn_every_n_layers": 1, "perceiver_depth": 2, "num_latents": 16,
                             "perceiver_heads": 4, "perceiver_dim_head": 16, "xattn_heads": 4, "xattn_dim_head": 32},
                   init="random", init_gate=0.5, precision=precision, device=device)
    return build_model(cfg)


def test_bf16_is_within_tolerance_of_fp32(device, tokenizer_path, images):
    m32 = _bench_like(device, tokenizer_path, "fp32")
    m16 = _bench_like(device, tokenizer_path, "bf16")
    with torch.no_grad():  # the same bf16 weight values in both models
        for a, b in zip(m16.model.parameters(), m32.model.parameters()):
            b.copy_(a.float())
    prompts = [_prompt(images, n, q) for q, n in enumerate([0, 2, 4, 6])]
    logp = []
    for m in (m32, m16):
        ids, valid = m._left_pad([m._encode(p.text) for p in prompts])
        with torch.inference_mode():
            logits = m.model(ids, valid, KVCache(4), m._media_state(prompts))
        assert logits.dtype == torch.float32  # the head's output is fp32 even with bf16 weights
        logp.append(logits.log_softmax(-1)[valid])  # real positions only
    ref, got = logp
    top = ref.topk(10, -1)
    diff = (got.gather(-1, top.indices) - top.values).abs().max().item()
    assert diff <= BF16_TOL, f"bf16 log-probs off by {diff:.4f} (tolerance {BF16_TOL})"
    clear = (top.values[:, 0] - top.values[:, 1]) > 4 * BF16_TOL  # a margin far above the tolerance
    assert torch.equal(got.argmax(-1)[clear], top.indices[clear, 0])


def test_device_map_across_gpu_and_cpu_equals_one_device(device, tokenizer_path, images):
    whole = _tiny(device, tokenizer_path)
    split = _tiny(device, tokenizer_path, "model.device_map=[0-0,1-1]", f"model.devices=[{device},cpu]")
    assert split.model.stages is not None and str(split.model.lang.blocks[1].mlp.up_proj.weight.device) == "cpu"
    first = "cpu" if device == "cpu" else "cuda:0"
    assert split.placement == f"{first}: vision, perceiver, io, layer 0; cpu: layer 1"
    prompts = [_prompt(images, n, q) for q, n in enumerate([1, 4, 0])]
    outs = []
    for m in (whole, split):
        ids, valid = m._left_pad([m._encode(p.text) for p in prompts])
        with torch.inference_mode():
            outs.append(m.model(ids, valid, KVCache(2), m._media_state(prompts)).cpu())
    assert (outs[0] - outs[1]).abs().max().item() <= 1e-4  # fp32; layer 1 ran on the CPU
    reqs = [GenerateRequest(_prompt(images, n, q), max_new_tokens=5, num_beams=3) for q, n in enumerate([0, 2, 5])]
    assert split.generate(reqs) == whole.generate(reqs)
    cached = next(iter(split.latents._items.values()))
    assert cached.device == split.model.latent_device  # latents stay on the perceiver's device


def test_fused_attention_kernels_are_used(device, tokenizer_path, images):
    """Prefill (padded and not), decode and segment cross-attention run without the math SDPA fallback."""
    if not device.startswith("cuda"):
        pytest.skip("kernel selection is a CUDA matter")
    from torch.nn.attention import SDPBackend, sdpa_kernel

    m = _bench_like(device, tokenizer_path, "bf16")
    reqs = [GenerateRequest(_prompt(images, n, q), max_new_tokens=3, num_beams=3) for q, n in enumerate([3, 5])]
    one = [GenerateRequest(_prompt(images, 4, 0), max_new_tokens=3, num_beams=1)]  # no padding: causal path
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
        assert len(m.generate(reqs)) == 2 and len(m.generate(one)) == 1


def test_images_are_pinned_and_copied_without_blocking(device, tokenizer_path, images):
    m = _tiny(device, tokenizer_path)
    pixels = m._to_vision(torch.stack([m._pixels(p) for p in images[:4]]))  # (4, 1, 3, H, W)
    assert pixels.device == m.model.vision_device and pixels.dtype == m.dtype and pixels.shape[:2] == (4, 1)
    m.generate([GenerateRequest(_prompt(images, 2, 0), max_new_tokens=2, num_beams=1)])
    assert all(t.device == m.model.latent_device for t in m.latents._items.values())
    phases = m.timer.snapshot()
    assert {"vision", "prefill", "decode"} <= set(phases)


def test_precision_auto_is_bf16_on_cuda(device, tokenizer_path):
    m = _tiny(device, tokenizer_path, "model.precision=auto")
    assert m.precision == ("bf16" if device.startswith("cuda") else "fp32")
    assert m.model.lang.blocks[0].self_attn.q_proj.weight.dtype == m.dtype
