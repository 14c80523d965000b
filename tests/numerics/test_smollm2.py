"""Our LLaMA decoder on the real SmolLM2-135M weights == transformers LlamaForCausalLM (fp32)."""

from __future__ import annotations

import torch

from flamingo_eval.models.assets import smollm2_dir
from flamingo_eval.models.hf_lm import load_hf_decoder


def test_smollm2_logits_match_transformers():
    from transformers import AutoTokenizer, LlamaForCausalLM

    path = smollm2_dir()
    tok = AutoTokenizer.from_pretrained(path)
    ids = torch.tensor([tok("Question: what color is the sky? Short answer: blue. The quick brown fox")["input_ids"]])
    hf = LlamaForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()
    ours = load_hf_decoder(path).eval()
    with torch.no_grad():
        ref = hf(ids).logits
        got = ours(ids)
    assert (got - ref).abs().max().item() <= 1e-4  # other kernels than transformers': float noise only
    top2 = ref[0, -1].topk(2).values
    assert top2[0] - top2[1] > 1e-3  # the argmax leads by far more than that noise: comparing it is fair
    assert got[0, -1].argmax() == ref[0, -1].argmax()
