"""RICES (CLIP-nearest demos, most similar last, id-checked feature cache), class-balanced demos, demo orders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flamingo_eval.errors import UserError
from flamingo_eval.prompts.rices import (
    ClipImageFeatures,
    RicesSampler,
    cached_features,
    load_cached,
    nearest,
)
from flamingo_eval.prompts.samplers import ClassBalancedSampler, SamplerContext
from flamingo_eval.types import Sample
from tests.fixtures_builders import photo

OPTIONS = {"rices_model": "ViT-S-32", "rices_pretrained": None, "device": "cpu", "rices_batch_size": 8,
           "rices_image_size": 64}


def test_nearest_most_similar_last_ties_by_index():
    pool = np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [0.6, 0.8], [0.8, 0.6]])
    assert nearest(pool, np.array([1.0, 0.0]), 3) == [4, 2, 0]
    assert nearest(pool, np.array([0.0, 1.0]), 2) == [3, 1]
    assert nearest(pool, np.array([1.0, 0.0]), 10) == [1, 3, 4, 2, 0]
    assert nearest(pool, np.array([1.0, 0.0]), 0) == []


def test_nearest_ties_at_the_cut_resolve_by_index():
    pool = np.array([[0.5, 0.0]] * 6 + [[1.0, 0.0]])  # six rows tied behind the best one
    assert nearest(pool, np.array([1.0, 0.0]), 3) == [1, 0, 6]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("rices")
    train = [Sample(id=f"t{i}", media=(str(photo(d / f"t{i}.jpg", i)),), references=("x",)) for i in range(12)]
    queries = [Sample(id=f"q{i}", media=(str(photo(d / f"q{i}.jpg", i + 3)),)) for i in range(4)]
    return train, queries


@pytest.fixture(scope="module")
def encoder():
    """One random ViT-S-32 for the module (building it is the slow part)."""
    return ClipImageFeatures("ViT-S-32", None, batch_size=8, image_size=64)


def _context(photos, cache_dir, encoder, queries=None) -> SamplerContext:
    train, default_queries = photos
    return SamplerContext(demo_split=train, queries=default_queries if queries is None else queries,
                          options={**OPTIONS, "rices_cache_dir": str(cache_dir)}, memo={"rices:encoder": encoder})


def test_rices_demos_are_cosine_neighbours_most_similar_last(photos, tmp_path, encoder):
    train, queries = photos
    ctx = _context(photos, tmp_path, encoder)
    sampler = RicesSampler(train[:5], "b", "train", 0, context=ctx)  # the query set is ignored: whole split
    pool_f, query_f = encoder(train), encoder(queries)
    assert np.allclose(np.linalg.norm(pool_f, axis=1), 1.0, atol=1e-5)
    for qi, q in enumerate(queries):
        sims = pool_f @ query_f[qi]
        expected = [train[i].id for i in np.argsort(-sims, kind="stable")[:4]][::-1]
        got = [d.id for d in sampler.demos(q, 4)]
        assert got == expected
        assert sims[int(got[-1][1:])] >= sims[int(got[0][1:])]  # most similar last
    assert sampler.demos(queries[0], 0) == []


def test_rices_never_picks_the_query_itself(photos, tmp_path, encoder):
    train, _ = photos
    ctx = _context(photos, tmp_path, encoder, queries=train)
    sampler = RicesSampler(train, "b", "train", 0, context=ctx)
    for q in train:
        ids = [d.id for d in sampler.demos(q, 3)]
        assert q.id not in ids and len(ids) == 3


def test_each_image_is_encoded_once_however_many_samples_show_it(photos, encoder):
    train, _ = photos
    repeated = [Sample(id=f"r{i}", media=train[i % 3].media, references=("x",)) for i in range(9)]  # 3 photos
    before = encoder.encoded
    feats = encoder(repeated)
    assert encoder.encoded - before == 3 and feats.shape[0] == 9
    # Rows 0 and 3 are one computed row copied; train[:3] again is encoded in the same padded batch shape
    # (rices_batch_size): the same computation, so exact equality is legitimate for both.
    assert np.array_equal(feats[0], feats[3]) and np.array_equal(feats[:3], encoder(train[:3]))


def test_a_feature_does_not_depend_on_its_neighbours_or_the_pool_size(photos, encoder):
    """Batches are padded to rices_batch_size (8): a photo's feature is the same bits alone, among 5 others
    or as the 11th of 12 (second batch); every forward has the same shape, so exact equality is legitimate."""
    train, _ = photos
    alone = encoder(train[10:11])[0]
    assert np.array_equal(encoder([*train[:5], train[10]])[5], alone)
    assert np.array_equal(encoder(train)[10], alone)


def test_second_run_reuses_cached_features(photos, tmp_path, monkeypatch, encoder):
    train, queries = photos
    before = encoder.encoded
    a = RicesSampler(train, "b", "train", 0, context=_context(photos, tmp_path, encoder))
    assert encoder.encoded - before == len(train) + len(queries)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 4 and all(f.endswith((".npy", ".json")) for f in files)

    def no_encoding(self, samples):
        raise AssertionError("features must come from the cache")

    monkeypatch.setattr(ClipImageFeatures, "__call__", no_encoding)
    # Another rices_batch_size would move features by ulps: it is part of the fingerprint (no reuse).
    assert ClipImageFeatures("ViT-S-32", None, batch_size=32, image_size=64).fingerprint() != encoder.fingerprint()
    fresh = ClipImageFeatures("ViT-S-32", None, batch_size=8, image_size=64)  # a new run: new encoder and memo
    second = _context(photos, tmp_path, fresh)
    b = RicesSampler(train, "b", "train", 1, context=second)  # another trial seed, too
    assert second.memo["rices:encoder"].encoded == 0 and second.memo["rices:encoder"]._model is None
    for q in queries:
        assert [d.id for d in a.demos(q, 5)] == [d.id for d in b.demos(q, 5)]
    # shots and trials within one run share the memo: no second lookup
    c = RicesSampler(train, "b", "train", 2, context=second)
    assert c.pool_feats is b.pool_feats


def test_cache_for_other_ids_or_encoder_is_refused(photos, tmp_path, encoder):
    train, _ = photos
    enc = encoder
    fp = enc.fingerprint()
    cached_features(enc, fp, train, tmp_path, "b-train")
    npy = next(tmp_path.glob("*.npy"))
    other = [s.id for s in train[::-1]]
    with pytest.raises(UserError, match="other sample ids"):
        load_cached(npy, other, fp)
    with pytest.raises(UserError, match="another encoder"):
        load_cached(npy, [s.id for s in train], "sha256:0000")
    assert load_cached(npy, [s.id for s in train], fp).shape[0] == len(train)
    # a sidecar edited to other ids (e.g. a copied cache of a changed dataset) is refused by the sampler too
    meta_path = npy.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["ids"] = other
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UserError, match="refusing to misalign"):
        cached_features(enc, fp, train, tmp_path, "b-train")


def test_fingerprint_names_model_and_weights():
    a = ClipImageFeatures("ViT-S-32", None).fingerprint()
    assert a == ClipImageFeatures("ViT-S-32", None).fingerprint()
    assert a != ClipImageFeatures("ViT-S-32", "openai").fingerprint()
    assert a != ClipImageFeatures("ViT-B-32", None).fingerprint()
    assert a != ClipImageFeatures("ViT-S-32", None, seed=1).fingerprint()


def test_rices_needs_context():
    with pytest.raises(UserError, match="context"):
        RicesSampler([], "b", "train", 0)


POOL = [Sample(id=f"s{i}", media=(), references=(str(i % 3),), label=i % 3) for i in range(30)]


def test_class_balanced_round_robin_nested_and_pure():
    s = ClassBalancedSampler(POOL, "b", "train", 0)
    q = Sample(id="q", media=())
    d9 = s.demos(q, 9)
    assert [d.id for d in s.demos(q, 4)] == [d.id for d in d9[:4]]
    for start in (0, 3, 6):
        assert sorted(d.label for d in d9[start : start + 3]) == [0, 1, 2]
    assert len({d.id for d in d9}) == 9
    assert [d.id for d in ClassBalancedSampler(POOL, "b", "train", 0).demos(q, 9)] == [d.id for d in d9]
    assert [d.id for d in ClassBalancedSampler(POOL, "b", "train", 1).demos(q, 9)] != [d.id for d in d9]
    assert POOL[0].id not in [d.id for d in s.demos(POOL[0], 29)] and len(s.demos(POOL[0], 29)) == 29


def test_class_balanced_needs_labels():
    with pytest.raises(UserError, match="label"):
        ClassBalancedSampler([Sample(id="a", media=())], "b", "train", 0)


def test_demo_orders_distinct_keyed_first_is_sampler_order():
    from flamingo_eval.prompting import demo_orders

    demos = POOL[:4]
    orders = demo_orders(demos, 6, "b", 0, "q")
    assert orders[0] == demos and len(orders) == 6
    assert len({tuple(d.id for d in o) for o in orders}) == 6
    assert all(sorted(d.id for d in o) == sorted(d.id for d in demos) for o in orders)
    assert orders == demo_orders(demos, 6, "b", 0, "q")
    assert len(demo_orders(POOL[:2], 6, "b", 0, "q")) == 2  # at most k! orders
    assert demo_orders([], 6, "b", 0, "q") == [[]]


def test_videos_are_compared_by_their_middle_frame(tmp_path, encoder):
    from flamingo_eval.types import VideoRef
    from flamingo_eval.video import thumbnail
    from tests.video_files import color_frames, frame_index, write_video

    clip = VideoRef(str(write_video(tmp_path / "v.mp4", color_frames(6))))  # 0.75 s at 8 fps
    middle = thumbnail(clip)
    assert frame_index(middle) == 3  # the frame shown at 0.375 s
    middle.save(tmp_path / "middle.png")  # lossless: the same pixels as an image file
    video_f = encoder([Sample(id="v", media=(clip,))])
    image_f = encoder([Sample(id="i", media=(str(tmp_path / "middle.png"),))])
    assert np.allclose(video_f, image_f, atol=1e-6)


def test_neighbours_searched_once_per_query_and_sliced_exactly(photos, tmp_path, encoder, monkeypatch):
    """Shots asked in any order give exactly a fresh search's demos; the demo split is scanned once per
    query for the run's largest shot count (more only when a larger k than planned is asked)."""
    from flamingo_eval.prompts import rices

    train, queries = photos
    ctx = _context(photos, tmp_path, encoder)
    ctx.options = {**ctx.options, "shots": [0, 2, 5], "zero_shot_text_demos": 2}
    fresh = RicesSampler(train, "b", "train", 0, context=_context(photos, tmp_path, encoder))
    calls: list[int] = []
    real = rices.nearest
    monkeypatch.setattr(rices, "nearest", lambda f, q, k: calls.append(k) or real(f, q, k))
    sampler = RicesSampler(train, "b", "train", 1, context=ctx)
    for k in (2, 5, 1, 3, 5):
        for q in queries:
            mine = [d.id for d in sampler.demos(q, k)]
            n = len(calls)
            assert mine == [d.id for d in fresh.demos(q, k)]
            del calls[n:]  # the fresh sampler's own searches
    assert calls == [6] * len(queries)
    sampler.demos(queries[0], 8)
    assert calls[-1] == 9
