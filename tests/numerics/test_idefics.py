"""IDEFICS on our engine vs transformers' IdeficsForVisionText2Text (fixtures from tools/make_idefics_fixtures.py).

Each variant directory is a tiny random IDEFICS in the hub layout (config.json, sharded safetensors + index,
tokenizer with the two added IDEFICS tokens) plus transformers' outputs. Our loader + model must give the same
pixels, logits (<= 1e-4 on every non-pad position of a left-padded batch with 1-3 images per row, text before
the first image and a ``</s>`` mid-prompt), greedy and 3-beam generations, and rank scores (<= 1e-5); the engine
must equal the plain reference path. transformers' IDEFICS code never runs here.
"""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch

from flamingo_eval.config import LMCfg, ModelCfg
from flamingo_eval.errors import UserError
from flamingo_eval.models.cache import KVCache
from flamingo_eval.models.eval_model import FlamingoEvalModel
from flamingo_eval.models.reference import ReferenceEvalModel
from flamingo_eval.types import GenerateRequest, InterleavedPrompt, RankRequest

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "idefics"
IMAGES = Path(__file__).resolve().parents[1] / "fixtures" / "parity" / "images"
VARIANTS = sorted(p.name for p in ROOT.iterdir() if (p / "expected.json").is_file())
LOGIT_TOL = 1e-4  # fp32, same weights; SDPA vs transformers' kernels differ in the last bits
RANK_TOL = 1e-5
IMG = "<fake_token_around_image><image><fake_token_around_image>"


def _prompt(text: str, media: list[int]) -> InterleavedPrompt:
    return InterleavedPrompt(text=text, media=tuple(str(IMAGES / f"img{i}.png") for i in media))


def model_cfg(path: Path, **kw: Any) -> ModelCfg:
    return ModelCfg(name="idefics-fixture", architecture="idefics", lm=LMCfg(source="hf", path=str(path)),
                    precision="fp32", device="cpu", **kw)


@cache
def loaded(variant: str) -> tuple[FlamingoEvalModel, dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    from flamingo_eval.models.build import build_model

    meta = json.loads((ROOT / variant / "expected.json").read_text())
    return build_model(model_cfg(ROOT / variant)), meta, load_file(str(ROOT / variant / "expected.safetensors"))


def reference_of(em: FlamingoEvalModel) -> ReferenceEvalModel:
    return ReferenceEvalModel(em.model, em.tokenizer, em.preprocess, model_id=em.model_id,
                              fingerprint=em.fingerprint(), batch_size=em.batch_size)


def test_fixtures_cover_the_variants() -> None:
    """Both q/k-norm settings, perceiver on and off, cross_layer_interval 1 and 2, float and vector gates."""
    configs = [json.loads((ROOT / v / "config.json").read_text()) for v in VARIANTS]
    assert {c["qk_layer_norms"] for c in configs} == {True, False}
    assert {c["use_resampler"] for c in configs} == {True, False}
    assert {c["cross_layer_interval"] for c in configs} == {1, 2}
    assert {c["alpha_type"] for c in configs} == {"float", "vector"}
    assert all(len(list((ROOT / v).glob("model-*-of-*.safetensors"))) > 1 for v in VARIANTS)  # sharded


@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_match_transformers(variant: str) -> None:
    from PIL import Image

    em, meta, exp = loaded(variant)
    assert (em.preprocess(Image.open(IMAGES / "img0.png")) - exp["pixels0"]).abs().max().item() <= 1e-5
    prompts = [_prompt(t, m) for t, m in meta["logit_prompts"]]
    ids, mask = exp["input_ids"], exp["attention_mask"].bool()
    for row, p in enumerate(prompts):  # our tokenisation = the processor's (one BOS, the IDEFICS tokens)
        assert em._encode(p.text) == ids[row][mask[row]].tolist()
    assert (em.model.media_token_id, em.model.fake_token_id) == (meta["media_token_id"], meta["fake_token_id"])
    with torch.inference_mode():
        logits = em.model(ids, mask, KVCache(len(em.model.lang.blocks)), em._media_state(prompts))
    diff = (logits - exp["logits"]).abs()[mask].max().item()
    assert diff <= LOGIT_TOL, f"{variant}: max abs logit difference {diff:.2e}"
    assert em.model.conditions_on_media()  # non-zero gates: the images matter in this comparison


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("mode,beams", [("greedy", 1), ("beam3", 3)])
def test_generations_match_transformers(variant: str, mode: str, beams: int) -> None:
    em, meta, _ = loaded(variant)
    reqs = [GenerateRequest(prompt=_prompt(t, m), max_new_tokens=meta["max_new_tokens"], num_beams=beams,
                            length_penalty=0.0) for t, m in meta["gen_prompts"]]
    want = [r["text"] for r in meta["generations"][mode]]
    assert em.generate(reqs) == want
    if beams > 1:  # engine == plain reference path (beams: the prefill-once branching is what differs)
        assert reference_of(em).generate(reqs) == want


@pytest.mark.parametrize("variant", VARIANTS)
def test_rank_scores_match_transformers(variant: str) -> None:
    em, meta, _ = loaded(variant)
    reqs = [RankRequest(prompt=_prompt(t, m), candidates=tuple(meta["candidates"])) for t, m in meta["rank_prompts"]]
    want = torch.tensor(meta["rank_scores"])
    for model in (em, reference_of(em)):
        diff = (torch.tensor(model.rank(reqs)) - want).abs().max().item()
        assert diff <= RANK_TOL, f"{variant} {type(model).__name__}: max abs rank-score difference {diff:.2e}"


def test_shared_prefix_carries_end_of_document() -> None:
    """Rows sharing a long prefix that ends past a ``</s>`` (no image since): the engine prefills the prefix
    once, then the rows; their text must still see no image until the next one, as in one forward."""
    em, _, _ = loaded(VARIANTS[0])
    head = f"{IMG}Caption: a red dog on a big horse</s>text after the end of document it is a small "
    prompts = [_prompt(head + tail, [0] + extra) for tail, extra in
               ((f"bird{IMG}Caption:", [2]), ("cat", []), ("dog dog", []))]
    reqs = [GenerateRequest(prompt=p, max_new_tokens=3, num_beams=3, length_penalty=0.0) for p in prompts]
    ids = [em._encode(p.text) for p in prompts]
    assert em._shared_prefix(ids, prompts) > 0  # the engine takes the branch-off-a-shared-prefix path
    assert em.generate(reqs) == reference_of(em).generate(reqs)
    rank = [RankRequest(prompt=p, candidates=("red", "blue cat", "a small bird")) for p in prompts]
    assert torch.allclose(torch.tensor(em.rank(rank)), torch.tensor(reference_of(em).rank(rank)), atol=RANK_TOL)


def _rewrite_shards(src: Path, dst: Path, drop: set[str], add: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    shards = sorted(dst.glob("model-*.safetensors"))
    states = [load_file(str(shard)) for shard in shards]
    for key, value in add.items():  # replace a key where it lives; a new key goes to the first shard
        next((st for st in states if key in st), states[0])[key] = value
    for shard, state in zip(shards, states):
        save_file({k: v for k, v in state.items() if k not in drop}, str(shard), metadata={"format": "pt"})


def test_missing_and_extra_keys_are_all_named(tmp_path: Path) -> None:
    from flamingo_eval.models.idefics import load_idefics

    variant = next(v for v in VARIANTS if "resampler" in v)
    drop = {"model.gated_cross_attn_layers.1.alpha_dense", "model.perceiver_resampler.latents",
            "lm_head.additional_fc.weight"}
    add = {"model.gated_cross_attn_layers.7.alpha_dense": torch.zeros(1),
           "model.vision_model.extra.weight": torch.ones(2)}
    _rewrite_shards(ROOT / variant, tmp_path / "bad", drop, add)
    with pytest.raises(UserError) as err:
        load_idefics(tmp_path / "bad")
    msg = str(err.value)
    assert "\n" not in msg
    for key in [*drop, *add]:
        assert key in msg, key
    assert "missing (3)" in msg and "unexpected (2)" in msg


def test_wrong_shape_and_ignored_buffers(tmp_path: Path) -> None:
    from flamingo_eval.models.idefics import load_idefics

    variant = VARIANTS[0]
    buffers = {"model.layers.0.self_attn.rotary_emb.inv_freq": torch.ones(4),
               "model.vision_model.embeddings.position_ids": torch.arange(17)[None]}
    _rewrite_shards(ROOT / variant, tmp_path / "ok", set(), buffers)  # old checkpoints saved these buffers
    _, report = load_idefics(tmp_path / "ok")
    assert sorted(report.ignored) == sorted(buffers)
    _rewrite_shards(ROOT / variant, tmp_path / "bad", set(), {"model.norm.weight": torch.ones(3)})
    with pytest.raises(UserError, match=r"wrong shape \(1\): model.norm.weight \(checkpoint \(3,\), model \(16,\)\)"):
        load_idefics(tmp_path / "bad")


def test_engine_batch_invariance_and_zero_gate_skip() -> None:
    """Batch size 1 == batched; all gates zero -> the bridge is skipped and the images cannot matter."""
    em, meta, _ = loaded(VARIANTS[-1])
    reqs = [GenerateRequest(prompt=_prompt(t, m), max_new_tokens=meta["max_new_tokens"], num_beams=3,
                            length_penalty=0.0) for t, m in meta["gen_prompts"][:2]]
    assert [em.generate([r])[0] for r in reqs] == [r["text"] for r in meta["generations"]["beam3"][:2]]
    from flamingo_eval.models.build import build_model

    zero = build_model(model_cfg(ROOT / VARIANTS[-1]))
    for blk in zero.model.xattn.values():
        blk.alpha_cross_attn.data.zero_()  # type: ignore[union-attr,operator]
        blk.alpha_dense.data.zero_()  # type: ignore[union-attr,operator]
    assert not zero.model.conditions_on_media()
    plain = [GenerateRequest(prompt=r.prompt, max_new_tokens=3, num_beams=1) for r in reqs]
    swapped = [GenerateRequest(prompt=InterleavedPrompt(r.prompt.text, tuple(reversed(r.prompt.media))),
                               max_new_tokens=3, num_beams=1) for r in reqs]
    assert zero.generate(plain) == zero.generate(swapped)
