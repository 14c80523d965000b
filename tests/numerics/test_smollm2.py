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
    assert (got - ref).abs().max().item() <= 1e-4
    assert got[0, -1].argmax() == ref[0, -1].argmax()
