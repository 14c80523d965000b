"""Demo samplers (pure, nested, limit-independent), prompt builder and extractors."""

from __future__ import annotations

import pytest

from flamingo_eval.config import TemplateCfg
from flamingo_eval.errors import UserError
from flamingo_eval.prompts import (
    FixedSampler,
    PromptTooLong,
    RandomSampler,
    build_prompt,
    extract_caption,
    extract_vqa,
    query_set,
)
from flamingo_eval.types import InterleavedPrompt, Sample

POOL = [Sample(id=f"t{i}", media=(f"img{i}.png",), fields={"question": f"q{i}"}, references=(f"a{i}", "x"))
        for i in range(300)]
VQA = TemplateCfg(demo="<image>Question:{question} Short answer:{answer}<|endofchunk|>",
                  query="<image>Question:{question} Short answer:", separator="\n", extractor="vqa")


def test_query_set_is_pure_and_sized():
    a = query_set(POOL, "b", "train", 0, 50)
    assert [s.id for s in a] == [s.id for s in query_set(POOL, "b", "train", 0, 50)]
    assert len({s.id for s in a}) == 50
    assert [s.id for s in a] != [s.id for s in query_set(POOL, "b", "train", 1, 50)]
    assert len(query_set(POOL, "b", "train", 0, 5000)) == len(POOL)


def test_random_sampler_nested_and_independent_of_other_queries():
    s = RandomSampler(POOL, "b", "train", 3)
    q = Sample(id="q1", media=("x.png",))
    d32 = [d.id for d in s.demos(q, 32)]
    for k in (0, 1, 4, 8, 16):
        assert [d.id for d in s.demos(q, k)] == d32[:k]
    assert len(set(d32)) == 32
    other = RandomSampler(POOL, "b", "train", 3)
    other.demos(Sample(id="zzz", media=()), 8)  # sampling for another query first changes nothing
    assert [d.id for d in other.demos(q, 32)] == d32
    assert [d.id for d in s.demos(Sample(id="q2", media=()), 32)] != d32
    assert [d.id for d in RandomSampler(POOL, "b", "train", 4).demos(q, 32)] != d32


@pytest.mark.parametrize("pool_size", [300, 20, 9])
def test_random_sampler_memoised_draws_equal_fresh_ones(pool_size):
    """With a run context the longest draw per (query, seed) is made once and sliced for every k: the
    demos must be exactly those of a fresh draw per call (queries in and out of the pool, pools smaller
    than the draw, k beyond the run's longest)."""
    from flamingo_eval.prompts.samplers import SamplerContext

    pool = POOL[:pool_size]
    queries = POOL[:5] + [Sample(id=f"q{i}", media=()) for i in range(30)]
    ctx = SamplerContext(queries=queries, options={"shots": [0, 4, 8, 16], "zero_shot_text_demos": 2})
    for seed in (0, 1):
        memo, fresh = RandomSampler(pool, "b", "train", seed, context=ctx), RandomSampler(pool, "b", "train", seed)
        assert memo.draws is not None
        for k in (16, 0, 2, 4, 8, 1, 30):
            for q in queries + [Sample(id="outside", media=())]:
                want = [d.id for d in fresh.demos(q, min(k, pool_size - 1))]
                assert [d.id for d in memo.demos(q, min(k, pool_size - 1))] == want, (seed, k, q.id)
    again = RandomSampler(pool, "b", "train", 0, context=ctx)
    assert again.draws is ctx.memo[f"random:b:train:0:{pool_size}"]  # shared across shot counts


def test_prefix_shuffle_draws_as_randrange():
    """prefix_shuffle spells randrange out for speed: the indices must be those of randrange itself."""
    import random

    from flamingo_eval.prompts.samplers import keyed_rng, prefix_shuffle

    def reference(rng, n, k):
        swapped, out = {}, []
        for i in range(min(k, n)):
            j = rng.randrange(i, n)
            vi, vj = swapped.get(i, i), swapped.get(j, j)
            swapped[j] = vi
            out.append(vj)
        return out

    for seed in range(200):
        n = random.Random(seed).choice([1, 2, 3, 7, 64, 65, 2048, 443757, 1 << 33])
        assert prefix_shuffle(keyed_rng("b", seed), n, 40) == reference(keyed_rng("b", seed), n, 40), (seed, n)


def test_samplers_never_use_the_query_itself():
    for cls in (RandomSampler, FixedSampler):
        s = cls(POOL[:10], "b", "train", 0)
        for q in POOL[:10]:
            ids = [d.id for d in s.demos(q, 9)]
            assert q.id not in ids and len(ids) == 9


def test_fixed_sampler_same_demos_for_every_query():
    s = FixedSampler(POOL, "b", "train", 0)
    a = [d.id for d in s.demos(Sample(id="q1", media=()), 8)]
    assert a == [d.id for d in s.demos(Sample(id="q2", media=()), 8)]
    assert a[:4] == [d.id for d in s.demos(Sample(id="q3", media=()), 4)]


def test_builder_interleaves_demos_and_query():
    q = Sample(id="q", media=("q.png",), fields={"question": "what?"})
    p = build_prompt(VQA, POOL[:2], q)
    assert p.text == ("<image>Question:q0 Short answer:a0<|endofchunk|>\n"
                      "<image>Question:q1 Short answer:a1<|endofchunk|>\n<image>Question:what? Short answer:")
    assert p.media == ("img0.png", "img1.png", "q.png") and p.demo_ids == ("t0", "t1")


def test_zero_shot_text_only_demos():
    q = Sample(id="q", media=("q.png",), fields={"question": "what?"})
    p = build_prompt(VQA, POOL[:2], q, text_only_demos=True)
    assert p.text.count("<image>") == 1 and p.media == ("q.png",)
    assert p.text.startswith("Question:q0 Short answer:a0<|endofchunk|>\n")


def test_long_prompts_drop_far_demos_never_the_query():
    """Demos go from the far end (the start of the prompt, farthest from the query) until prompt + reserve fit."""
    q = Sample(id="q", media=("q.png",), fields={"question": "what?"})
    p = build_prompt(VQA, POOL[:8], q, count_tokens=len, max_tokens=200, reserve=5)
    assert 0 < len(p.demo_ids) < 8 and p.dropped_demos == 8 - len(p.demo_ids)
    assert p.demo_ids == tuple(d.id for d in POOL[8 - len(p.demo_ids) : 8])  # the demos nearest the query stay
    assert p.text.endswith("<image>Question:what? Short answer:") and len(p.text) + 5 <= 200
    one_more = build_prompt(VQA, POOL[8 - len(p.demo_ids) - 1 : 8], q, count_tokens=len, max_tokens=10**6)
    assert len(one_more.text) + 5 > 200  # the largest number of demos that fits is kept
    assert p.media == tuple(d.media[0] for d in POOL[8 - len(p.demo_ids) : 8]) + ("q.png",)


def test_reserve_counts_against_the_context():
    q = Sample(id="q", media=("q.png",), fields={"question": "what?"})
    full = build_prompt(VQA, POOL[:2], q)
    assert build_prompt(VQA, POOL[:2], q, count_tokens=len, max_tokens=len(full.text) + 3, reserve=3).dropped_demos == 0
    assert build_prompt(VQA, POOL[:2], q, count_tokens=len, max_tokens=len(full.text) + 3, reserve=4).dropped_demos == 1


def test_query_alone_too_long_is_prompt_too_long():
    q = Sample(id="q7", media=("q.png",), fields={"question": "why " * 100})
    with pytest.raises(PromptTooLong, match=r"sample q7: .* \+ 5 reserved for the answer > model.max_context 200"):
        build_prompt(VQA, POOL[:2], q, count_tokens=len, max_tokens=200, reserve=5)


def test_image_count_must_match_media():
    with pytest.raises(ValueError):
        InterleavedPrompt(text="<image><image>", media=("a",))


def test_missing_template_field_is_a_user_error():
    with pytest.raises(UserError, match="question"):
        build_prompt(VQA, [], Sample(id="q", media=("q.png",), fields={}))


@pytest.mark.parametrize("raw,expected", [
    ("blue<|endofchunk|>", "blue<|endofchunk|>"), (" blue Question: what", "blue"), ("red, green", "red"),
    ("yes Short answer: no", "yes"), ("two Answer", "two")])
def test_vqa_extractor(raw, expected):
    assert extract_vqa(raw) == expected


def test_caption_extractor():
    assert extract_caption(' "A dog" on grass Output: a cat') == "A dog on grass"
