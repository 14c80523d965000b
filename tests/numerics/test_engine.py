"""Engine == plain reference path (greedy, beam 3, rank); branching == no branching; candidate scoring over
the shared context cache == naive forwards; the on-disk latent cache round trip."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from flamingo_eval.models import eval_model as em
from flamingo_eval.models.cache import BranchKVCache, KVCache
from flamingo_eval.models.decoders.layers import attend
from flamingo_eval.models.eval_model import FlamingoEvalModel, LatentCache
from flamingo_eval.models.reference import ReferenceEvalModel
from flamingo_eval.types import GenerateRequest, InterleavedPrompt, RankRequest
from tests.conftest import easyvqa_data
from tests.margins import assert_generation_margin, assert_rank_margin

IMGS = sorted((easyvqa_data() / "test" / "images").glob("*.png"))


def _prompt(demos: list[int], query: int) -> InterleavedPrompt:
    text = "".join(f"<image>Question:what color is {i}? Short answer:blue<|endofchunk|>" for i in demos)
    media = tuple(str(IMGS[10 + i]) for i in demos) + (str(IMGS[query]),)
    return InterleavedPrompt(text=text + "<image>Question:what shape? Short answer:", media=media)


def _twin(m: FlamingoEvalModel, cls: type = FlamingoEvalModel, **kw) -> FlamingoEvalModel:
    """Another eval model over the same module and weights (fresh caches)."""
    return cls(m.model, m.tokenizer, m.preprocess, model_id=m.model_id, fingerprint=m.fingerprint(),
               batch_size=kw.pop("batch_size", m.batch_size), **kw)


@pytest.fixture(scope="module")
def reference(tiny_model):
    return _twin(tiny_model, ReferenceEvalModel, batch_size=3)


def _requests(beams: int) -> list[GenerateRequest]:
    demos = [[], [0], [1, 2], [3, 4, 5], [2], [0, 1, 2, 3]]
    return [GenerateRequest(_prompt(d, q), max_new_tokens=5, num_beams=beams) for q, d in enumerate(demos)]


@pytest.mark.parametrize("beams", [1, 3])
def test_engine_equals_reference_generate(tiny_model, reference, beams):
    reqs = _requests(beams)
    fast = tiny_model.generate(reqs)
    # The paths pad differently and use other attention kernels (logits equal up to float noise): exact
    # text equality is a fair test only because these prompts have no near-tie (tests/margins.py).
    assert_generation_margin(lambda: tiny_model.generate(reqs), fast)
    assert fast == reference.generate(reqs)


def test_engine_equals_reference_rank(tiny_model, reference):
    cands = ("blue", "red square", "a green circle", "yellow", "no", "rectangle shaped thing")
    reqs = [RankRequest(_prompt(d, q), cands, normalize_length=q % 2 == 0)
            for q, d in enumerate([[], [0], [1, 2], [3, 4, 5]])]
    fast, ref = torch.tensor(tiny_model.rank(reqs)), torch.tensor(reference.rank(reqs))
    assert (fast - ref).abs().max().item() <= 1e-4  # other shapes and kernels: float noise only
    assert_rank_margin(fast.tolist(), 1e-4)  # winners lead by > 2e-4: the argmax follows from the line above
    assert fast.argmax(-1).tolist() == ref.argmax(-1).tolist()


def test_generated_image_token_is_banned_on_both_paths(tiny_model, reference, monkeypatch):
    """A generated <image> has no picture behind it: neither path may emit it (it used to crash the engine)."""
    lang, mid = tiny_model.model.lang, tiny_model.model.media_token_id
    head = lang.head

    def biased(x):
        out = head(x)
        # <image> becomes every step's argmax. Not +1e4: at that magnitude float32 log-probs have a
        # resolution of ~1e-3, which would turn genuine gaps into ties decided by rounding.
        out[..., mid] += 100.0
        return out

    monkeypatch.setattr(lang, "head", biased)
    reqs = _requests(1)[:2] + _requests(3)[:2]
    first = tiny_model._prefill([r.prompt for r in reqs])[0]
    assert (first.argmax(-1) == mid).all()  # the ban is what keeps <image> out
    fast = tiny_model.generate(reqs)
    assert_generation_margin(lambda: tiny_model.generate(reqs), fast)  # no near-tie: exact text is fair
    assert fast == reference.generate(reqs)


def test_empty_candidate_never_wins_on_either_path(tiny_model, reference):
    reqs = [RankRequest(_prompt([0], 1), ("", "blue", "red square"), normalize_length=True)]
    for m in (tiny_model, _twin(tiny_model, rank_tree=False), reference):
        scores = m.rank(reqs)[0]
        assert scores[0] == float("-inf") and all(s > float("-inf") for s in scores[1:])


def test_reference_encodes_every_slot_and_beam(tiny_model):
    ref = _twin(tiny_model, ReferenceEvalModel, batch_size=2)
    reqs = [GenerateRequest(_prompt([0, 1], 0), 2, num_beams=3), GenerateRequest(_prompt([2], 1), 2, num_beams=3)]
    ref.generate(reqs)
    assert ref.latents.encodes == 2 * 3 * 3  # rows x beams x max images (one zero image pads row 2)


def test_shared_prefix_branching_equals_no_branching(tiny_model, monkeypatch):
    fixed = [0, 1, 2]  # fixed demos: every prompt shares the demo prefix and its images
    prompts = [_prompt(fixed, q) for q in range(4)]
    m = _twin(tiny_model)
    ids = [m._encode(p.text) for p in prompts]
    assert m._shared_prefix(ids, prompts) > em.MIN_SHARED_PREFIX
    gen = [GenerateRequest(p, max_new_tokens=4, num_beams=b) for p in prompts for b in (1, 3)]
    rank = [RankRequest(p, ("blue", "red square", "a big green circle")) for p in prompts]
    branched_logits = m._prefill(prompts)[0]
    branched = (m.generate(gen), torch.tensor(m.rank(rank)))
    assert_generation_margin(lambda: m.generate(gen), branched[0], seeds=(0, 1))  # far from ties: exact text
    monkeypatch.setattr(em, "MIN_SHARED_PREFIX", 10**9)
    assert m._shared_prefix(ids, prompts) == 0
    plain_logits = m._prefill(prompts)[0]
    assert (branched_logits - plain_logits).abs().max().item() <= 1e-4  # other shapes: float noise only
    assert branched[0] == m.generate(gen)
    assert (branched[1] - torch.tensor(m.rank(rank))).abs().max().item() <= 1e-4


def test_shared_prefix_stops_at_a_different_image(tiny_model):
    m = _twin(tiny_model)
    a, b = _prompt([0, 1, 2], 0), _prompt([0, 5, 2], 1)  # same text, second demo image differs
    ids = [m._encode(p.text) for p in (a, b)]
    n = m._shared_prefix(ids, [a, b])
    media_positions = [i for i, t in enumerate(ids[0]) if t == m.model.media_token_id]
    assert n <= media_positions[1]


def test_candidates_over_shared_cache_equal_naive_forwards(tiny_model):
    m = tiny_model
    p = _prompt([0, 1], 3)
    cands = ("blue", "red square", "a green circle with dots", "x", "left right up down")
    got = m.rank([RankRequest(p, cands, normalize_length=False)])[0]
    ctx = m._encode(p.text)
    for cand, score in zip(cands, got):
        ids = torch.tensor([ctx + m.tokenizer(cand, add_special_tokens=False)["input_ids"]])
        logits = m.model(ids, torch.ones_like(ids, dtype=torch.bool), KVCache(len(m.model.lang.blocks)),
                         m._media_state([p]))
        lp = logits[0, len(ctx) - 1 : -1].log_softmax(-1).gather(-1, ids[0, len(ctx) :, None])[:, 0]
        assert abs(score - lp.sum().item()) <= 1e-4


@pytest.mark.parametrize("hkv,rows,groups,bias", [(4, 6, 2, False), (2, 6, 3, True), (2, 4, 1, False)])
def test_branched_attention_equals_sdpa(hkv, rows, groups, bias):
    g = torch.Generator().manual_seed(rows + hkv)
    h, dh, sp, t = 4, 8, 7, 3
    parents = rows // groups
    q = torch.randn(rows, h, t, dh, generator=g)
    pk, pv = torch.randn(parents, hkv, sp, dh, generator=g), torch.randn(parents, hkv, sp, dh, generator=g)
    k, v = torch.randn(rows, hkv, t, dh, generator=g), torch.randn(rows, hkv, t, dh, generator=g)
    valid = torch.ones(rows, sp + t, dtype=torch.bool)
    valid[0, :2] = False  # padding inside the shared part
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    mask = torch.cat([valid[:, None, :sp].expand(rows, t, sp), causal[None].expand(rows, t, t)], -1)[:, None]
    b = torch.randn(rows, h, t, sp + t, generator=g) if bias else None
    shared = KVCache(1)
    shared.update(0, pk, pv)
    cache = BranchKVCache([shared], rows=rows)
    bk, bv = cache.update(0, k, v)
    got = attend(q, bk, bv, mask, b)
    full_k = torch.cat([pk.repeat_interleave(groups, 0), k], 2).repeat_interleave(h // hkv, 1)
    full_v = torch.cat([pv.repeat_interleave(groups, 0), v], 2).repeat_interleave(h // hkv, 1)
    want = F.scaled_dot_product_attention(q, full_k, full_v, attn_mask=mask if b is None else
                                          b.masked_fill(~mask, float("-inf")))
    assert (got - want).abs().max().item() <= 1e-5


def test_latent_cache_on_disk_round_trip(tiny_model, tmp_path):
    reqs = [GenerateRequest(_prompt([0, 1], q), max_new_tokens=3, num_beams=1) for q in range(3)]
    first = _twin(tiny_model, latent_cache_dir=str(tmp_path))
    out = first.generate(reqs)
    n_images = len({p for r in reqs for p in r.prompt.media})
    assert first.latents.encodes == n_images and first.latents.disk_writes == n_images
    again = _twin(tiny_model, latent_cache_dir=str(tmp_path))  # a new run: memory empty, disk warm
    assert again.generate(reqs) == out  # the same computation on the same latent bits: exact
    assert again.latents.encodes == 0 and again.latents.disk_hits == n_images
    other = FlamingoEvalModel(tiny_model.model, tiny_model.tokenizer, tiny_model.preprocess, model_id="x",
                              fingerprint="sha256:other-weights", latent_cache_dir=str(tmp_path))
    other.generate(reqs[:1])
    assert other.latents.disk_hits == 0 and other.latents.encodes == 3  # other weights never match


def test_latents_do_not_depend_on_neighbours_or_image_count(tiny_model, monkeypatch):
    """Fixed vision batch: an image's latents are the same bits alone, among 3 or among 11 other images, at
    any position, on the engine and on the reference path. Every vision forward has the same padded shape
    (checked), so exact equality is legitimate here."""
    shapes: list[int] = []
    encode = tiny_model.model.encode_media  # images and videos: (items, frames, 3, H, W), one image = 1 frame
    monkeypatch.setattr(tiny_model.model, "encode_media", lambda px: shapes.append(px.shape[0]) or encode(px))
    x = str(IMGS[0])
    alone = _twin(tiny_model, vision_batch_size=4)._image_latents([x])[0]
    layouts = [[x, *map(str, IMGS[1:4])], [*map(str, IMGS[1:4]), x], [*map(str, IMGS[1:7]), x, *map(str, IMGS[7:12])]]
    for paths in layouts:
        got = _twin(tiny_model, vision_batch_size=4)._image_latents(paths)  # fresh cache: every image encoded
        assert torch.equal(got[paths.index(x)], alone), len(paths)
    ref = _twin(tiny_model, ReferenceEvalModel, vision_batch_size=4)
    slots = ref._encode_all([_prompt([1, 2], 0), _prompt([], 0)], repeat=3)  # (rows*beams, M, N, Dv)
    assert torch.equal(slots[0, 2], alone) and torch.equal(slots[3, 0], alone)  # query image, both rows
    assert set(shapes) == {4}


def test_vision_batch_size_is_validated_and_in_the_latent_key(tiny_model):
    from flamingo_eval.config_load import compose_config
    from flamingo_eval.errors import UserError
    from flamingo_eval.models.build import build_model

    with pytest.raises(UserError, match="model.vision_batch_size"):
        build_model(compose_config("easyvqa", "tiny", ["model.vision_batch_size=0"]).model)
    a, b = _twin(tiny_model, vision_batch_size=4), _twin(tiny_model, vision_batch_size=8)
    assert a._latent_key("d") != b._latent_key("d")  # latents of another chunk shape are never reused


def test_latent_cache_lru_budget_and_stats():
    cache = LatentCache(max_bytes=3 * 16)
    for i in range(5):
        cache.put(f"fp/{i}", torch.zeros(4))
    assert cache.get("fp/0") is None and cache.get("fp/4") is not None
    stats = cache.stats()
    assert stats["items"] == 3 and stats["evictions"] == 2 and stats["hits"] == 1
