"""Flamingo numerics: per-segment cross-attention == masked reference, cached == uncached,
batch-size invariance, images matter, one vision encode per distinct image, HF beam-search parity."""

from __future__ import annotations

import pytest
import torch

from flamingo_eval.models.cache import KVCache
from flamingo_eval.models.cross_attention import masked_cross_attention_reference, segment_attention
from flamingo_eval.models.decoding import beam_search, greedy
from flamingo_eval.types import GenerateRequest, InterleavedPrompt, RankRequest
from tests.conftest import easyvqa_data
from tests.margins import assert_generation_margin

IMGS = sorted((easyvqa_data() / "test" / "images").glob("*.png"))


def _img_idx(media_flags: torch.Tensor) -> torch.Tensor:
    return media_flags.long().cumsum(-1)


@pytest.mark.parametrize("seed", range(4))
def test_segment_attention_equals_masked_reference(seed):
    g = torch.Generator().manual_seed(seed)
    b, h, t, dh, m, n = 3, 2, 40, 8, 4, 5
    q = torch.randn(b, h, t, dh, generator=g)
    k = torch.randn(b, m, h, n, dh, generator=g)
    v = torch.randn(b, m, h, n, dh, generator=g)
    flags = torch.zeros(b, t, dtype=torch.bool)
    flags[0, [3, 10, 11, 30]] = True  # text before the first image, adjacent images
    flags[1, [0]] = True  # one image
    flags[2, [20, 25]] = True  # rows with fewer images than M (padding images never referenced)
    idx = _img_idx(flags)
    ref = masked_cross_attention_reference(q, k, v, idx)
    out = segment_attention(q, k, v, idx)
    assert (out - ref).abs().max().item() <= 1e-5
    assert out[0, :, :3].abs().max() == 0  # no image yet -> no cross-attention output


def test_segment_attention_single_image_fast_path():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 2, 3, 8, generator=g)
    k, v = torch.randn(2, 3, 2, 4, 8, generator=g), torch.randn(2, 3, 2, 4, 8, generator=g)
    idx = torch.full((2, 3), 3)
    assert torch.allclose(segment_attention(q, k, v, idx), masked_cross_attention_reference(q, k, v, idx), atol=1e-5)


def _prompt(n_demo: int, query_img: int = 0) -> InterleavedPrompt:
    demos = "".join(f"<image>Question:what color {i}? Short answer:blue<|endofchunk|>\n" for i in range(n_demo))
    media = tuple(str(IMGS[10 + i]) for i in range(n_demo)) + (str(IMGS[query_img]),)
    return InterleavedPrompt(text=demos + "<image>Question:what shape? Short answer:", media=media)


def test_cached_decoding_equals_full_forward(tiny_model):
    m = tiny_model
    p = _prompt(3)
    ids = torch.tensor([m._encode(p.text) + [5, 17, 42]])
    valid = torch.ones_like(ids, dtype=torch.bool)
    full = m.model(ids, valid, KVCache(len(m.model.lang.blocks)), m._media_state([p]))
    cache = KVCache(len(m.model.lang.blocks))
    media = m._media_state([p])
    t0 = ids.shape[1] - 3
    parts = [m.model(ids[:, :t0], valid[:, :t0], cache, media)]
    for j in range(t0, ids.shape[1]):
        parts.append(m.model(ids[:, j : j + 1], valid[:, : j + 1], cache, media))
    inc = torch.cat(parts, dim=1)
    assert (inc - full).abs().max().item() <= 1e-4


@pytest.mark.parametrize("beams", [1, 3])
def test_batch_size_invariance(tiny_model, beams):
    reqs = [GenerateRequest(_prompt(i % 4, query_img=i), max_new_tokens=4, num_beams=beams) for i in range(8)]
    batched = tiny_model.generate(reqs)
    single = [tiny_model.generate([r])[0] for r in reqs]
    # Batch 1 vs 8 pads to other shapes (logits equal up to float noise): the text may be compared exactly
    # because this fixture has no near-tie (tests/margins.py).
    assert_generation_margin(lambda: tiny_model.generate(reqs), batched)
    assert batched == single


def test_rank_batch_invariance_and_chunking(tiny_model):
    reqs = [RankRequest(_prompt(i % 3, query_img=i), ("blue", "red square", "a green circle")) for i in range(5)]
    batched = tiny_model.rank(reqs)
    single = [tiny_model.rank([r])[0] for r in reqs]
    old = tiny_model.rank_chunk_bytes
    tiny_model.rank_chunk_bytes = 1  # one candidate per forward
    chunked = tiny_model.rank(reqs)
    tiny_model.rank_chunk_bytes = old
    # Other batch and chunk shapes: the same scores up to float noise.
    assert torch.allclose(torch.tensor(batched), torch.tensor(single), atol=1e-4)
    assert torch.allclose(torch.tensor(batched), torch.tensor(chunked), atol=1e-4)


def test_rank_scores_match_a_plain_forward(tiny_model):
    m = tiny_model
    p = _prompt(2)
    cand = "red square"
    ctx = m._encode(p.text)
    cand_ids = m.tokenizer(cand, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ctx + cand_ids])
    logits = m.model(ids, torch.ones_like(ids, dtype=torch.bool), KVCache(len(m.model.lang.blocks)),
                     m._media_state([p]))
    lp = logits[0, len(ctx) - 1 : -1].log_softmax(-1).gather(-1, torch.tensor(cand_ids)[:, None])[:, 0]
    assert abs(m.rank([RankRequest(p, (cand,))])[0][0] - lp.mean().item()) <= 1e-4


def test_query_image_changes_the_output(tiny_model):
    a = tiny_model.rank([RankRequest(_prompt(2, query_img=0), ("blue", "red"))])[0]
    b = tiny_model.rank([RankRequest(_prompt(2, query_img=1), ("blue", "red"))])[0]
    assert max(abs(x - y) for x, y in zip(a, b)) > 1e-3
    outs = {tiny_model.generate([GenerateRequest(_prompt(0, query_img=i), max_new_tokens=5, num_beams=1)])[0]
            for i in range(8)}
    assert len(outs) > 1


def test_each_distinct_image_is_encoded_once(tiny_model):
    from flamingo_eval.models.eval_model import LatentCache

    tiny_model.latents = LatentCache(1 << 30)
    reqs = [GenerateRequest(_prompt(3, query_img=i), max_new_tokens=2, num_beams=3) for i in range(4)]
    tiny_model.generate(reqs)
    tiny_model.generate(reqs)
    distinct = {m for r in reqs for m in r.prompt.media}
    assert tiny_model.latents.encodes == len(distinct)


def test_beam_search_matches_hf_generate():
    """Our decoding loop over our LLaMA decoder == transformers generate (beam 3, lp 0, eos stop)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from flamingo_eval.models.hf_lm import decoder_from_hf_model

    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, initializer_range=0.3)).eval()
    ours = decoder_from_hf_model(hf).eval()
    prompt = torch.tensor([[1, 5, 9, 22, 7]])
    for eos in range(3, 30):
        for beams in (1, 3):
            ref = hf.generate(prompt, attention_mask=torch.ones_like(prompt), num_beams=beams, max_new_tokens=6,
                              length_penalty=0.0, eos_token_id=eos, pad_token_id=0, do_sample=False)[0, 5:].tolist()
            if eos in ref:
                ref = ref[: ref.index(eos)]
            cache = KVCache(2)
            state = {"n": prompt.shape[1]}
            first = ours(prompt, cache=cache)[:, -1]

            def step(tok, cache=cache, state=state):
                state["n"] += 1
                return ours(tok[:, None], torch.ones(tok.shape[0], state["n"], dtype=torch.bool), cache)[:, -1]

            with torch.no_grad():
                if beams == 1:
                    got = greedy(first, step, 6, {eos})[0]
                else:
                    got = beam_search(first, step, cache.select, beams, 6, {eos}, 0.0)[0]
            assert got == ref, (eos, beams)
