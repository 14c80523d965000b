"""The trained-bridge path: explicit cross-attention placement, the bridge file (only the trained tensors,
OpenFlamingo key layout + added token rows), ``model.blind``, and deterministic training at tiny scale."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from flamingo_eval.errors import UserError
from flamingo_eval.models.checkpoints import ADDED_ROWS_KEY, bridge_state_dict, load_flamingo_checkpoint
from flamingo_eval.models.flamingo import FlamingoConfig, feed_forward

PARITY = Path(__file__).resolve().parents[1] / "fixtures" / "parity"


def test_cross_attn_layers_overrides_every_n_and_is_range_checked():
    assert FlamingoConfig(cross_attn_every_n_layers=2).xattn_layers(6) == [1, 3, 5]
    assert FlamingoConfig(cross_attn_layers=[4, 2, 4]).xattn_layers(6) == [2, 4]
    with pytest.raises(UserError, match=r"cross_attn_layers \[6\] out of range: the LM has layers 0..5"):
        FlamingoConfig(cross_attn_layers=[6]).xattn_layers(6)
    assert feed_forward(64, 0.25)[1].out_features == 16 and feed_forward(64, 4)[1].out_features == 256


def test_efficientnet_image_size_sets_the_token_grid():
    from flamingo_eval.models.vision import EfficientNetLite0Encoder

    enc = EfficientNetLite0Encoder(pretrained=False, image_size=96)
    assert enc.num_tokens == 9 and enc.config()["image_size"] == 96
    assert enc(torch.zeros(1, 3, 96, 96)).shape == (1, 9, 1280)
    assert tuple(enc.preprocess(__import__("PIL.Image").Image.new("RGB", (64, 64))).shape) == (3, 96, 96)


def _parity_model():  # type: ignore[no-untyped-def]
    from flamingo_eval.models.build import build_model, special_ids
    from tests.numerics.test_parity import model_cfg

    meta = json.loads((PARITY / "llama" / "expected.json").read_text())
    built = build_model(model_cfg("llama", meta, checkpoint=None))
    return built.model, min(special_ids(built.tokenizer))


def test_bridge_file_holds_only_the_trained_tensors_and_loads_back(tmp_path):
    from safetensors.torch import load_file, save_file

    from flamingo_eval.models.build import weights_fingerprint

    trained, lm_vocab = _parity_model()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in trained.named_parameters():
            if name.startswith(("perceiver.", "xattn.")):
                p.copy_(torch.randn(p.shape, generator=gen))
        added = trained.lang.vocab_size - lm_vocab  # <|endofchunk|>, <image> and this tokenizer's <PAD>
        trained.lang.input_embeddings().weight[lm_vocab:] = torch.randn(added, trained.lang.hidden_size, generator=gen)
    state = bridge_state_dict(trained, lm_vocab)
    assert all(v.dtype == torch.float16 for v in state.values())
    assert state[ADDED_ROWS_KEY].shape == (trained.lang.vocab_size - lm_vocab, trained.lang.hidden_size)
    assert {k.split(".")[0] for k in state} == {"perceiver", "lang_encoder", ADDED_ROWS_KEY}
    assert all("gated_cross_attn_layer" in k for k in state if k.startswith("lang_encoder"))
    path = tmp_path / "bridge.safetensors"
    save_file(state, str(path))
    fresh, _ = _parity_model()
    before = weights_fingerprint(fresh)
    load_flamingo_checkpoint(fresh, path, lm_vocab=lm_vocab, new_head_rows="mean")  # this fixture's head is untied
    got, want = fresh.state_dict(), trained.state_dict()
    for name in got:  # the bridge and the rows equal the fp16 file; every frozen weight is untouched
        if name.startswith(("perceiver.", "xattn.")):
            assert torch.equal(got[name], want[name].half().float()), name
    emb = "lang." + next(n for n, m in fresh.lang.named_modules() if m is fresh.lang.input_embeddings()) + ".weight"
    assert torch.equal(got[emb][lm_vocab:], want[emb][lm_vocab:].half().float())
    assert torch.equal(got[emb][:lm_vocab], want[emb][:lm_vocab])
    assert weights_fingerprint(fresh) != before  # the record's fingerprint covers the bridge
    bad = dict(load_file(str(path)), **{ADDED_ROWS_KEY: torch.zeros(3, 4)})
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(UserError, match=r"added_token_embeddings has shape \(3, 4\)"):
        load_flamingo_checkpoint(_parity_model()[0], tmp_path / "bad.safetensors", lm_vocab=lm_vocab,
                                 new_head_rows="mean")


def test_blind_zeroes_every_gate_and_the_package_scheme_resolves():
    from flamingo_eval.config import PACKAGE_DIR
    from flamingo_eval.config_load import compose_config
    from flamingo_eval.models.build import build_model, checkpoint_path

    cfg = compose_config("easyvqa", "tiny").model
    assert build_model(cfg).model.conditions_on_media()
    assert not build_model(replace(cfg, blind=True)).model.conditions_on_media()
    assert checkpoint_path("package:weights/x.safetensors") == PACKAGE_DIR / "weights" / "x.safetensors"
    assert checkpoint_path("~/c.pt") == Path("~/c.pt").expanduser()


def test_training_is_deterministic_and_reaches_both_phases():
    """Two runs of the first steps (cached phase, then the full-depth phase that trains the token rows)
    give the same loss curve. Same process, shapes and thread count, so the floats agree bit for bit."""
    from flamingo_eval.training import Silent, TrainConfig, train

    cfg = TrainConfig(model="tiny", val_images=2, train_images=4, sequences=6, val_sequences=2, steps=2,
                      row_steps=1, batch_size=3, eval_every=3, feature_batch=8, threads=1)
    first, hist = train(cfg, Silent())
    rows_before = first.trainer.rows.detach().clone()
    _, again = train(cfg, Silent())
    assert len(hist.loss) == 3 and hist.loss == again.loss and hist.val == again.val
    assert all(torch.isfinite(torch.tensor(hist.loss)))
    assert first.info["split"] == "train" and first.info["val_images"] == 2
    emb = first.model.lang.input_embeddings().weight
    assert first.trainer.rows.grad is not None  # the full-depth phase reached the token rows
    assert torch.equal(emb[first.trainer.lm_vocab:], rows_before)  # and wrote them into the table


def test_yes_no_keep_and_the_attention_only_resampler():
    """``yes_no_keep=0`` leaves no yes/no chunk; by default the resampler's feed-forward adds exactly 0 and,
    like its query/key/value projections, is not trained."""
    from flamingo_eval.training import Silent, TrainConfig
    from flamingo_eval.training.bridge import frozen_names, prepare

    cfg = TrainConfig(model="tiny", val_images=2, train_images=30, sequences=40, val_sequences=2, max_chunks=2,
                      yes_no_keep=0.0)
    p = prepare(cfg, Silent())
    answers = [a for s in p.train for _, a in s.pairs]
    assert len(answers) >= 40 and not {"yes", "no"} & set(answers)
    names = dict(p.model.named_parameters())
    frozen = frozen_names(p.model, cfg)
    assert {n.split(".", 3)[-1] for n in frozen} >= {"0.to_q.weight", "0.to_kv.weight", "1.3.weight"}
    assert not any(q is names[n] for n in frozen for q in p.trainer.bridge)
    ff = p.model.perceiver.layers[0][1]
    assert torch.count_nonzero(ff[-1].weight) == 0 and torch.equal(ff(torch.randn(2, 3, ff[0].normalized_shape[0])),
                                                                 torch.zeros(2, 3, ff[0].normalized_shape[0]))
    assert not frozen_names(p.model, replace(cfg, train_resampler_ff=True, freeze_resampler_attention=False))
    with pytest.raises(UserError, match=r"yes_no_keep=1.5 is a share.*--yes-no-keep"):
        prepare(replace(cfg, yes_no_keep=1.5), Silent())
    kept = prepare(replace(cfg, yes_no_keep=1.0), Silent())
    assert {"yes", "no"} & {a for s in kept.train for _, a in s.pairs}


def test_balanced_share_and_init_from(tmp_path):
    """``balanced_share`` appends balanced sequences after the natural ones (which stay as they were);
    ``init_from`` starts from a bridge file: every trained tensor and the token rows come from it."""
    from safetensors.torch import save_file

    from flamingo_eval.models.checkpoints import bridge_state_dict
    from flamingo_eval.training import Silent, TrainConfig
    from flamingo_eval.training.bridge import prepare

    cfg = TrainConfig(model="tiny", val_images=2, train_images=30, sequences=40, val_sequences=2, max_chunks=2)
    natural = prepare(cfg, Silent())
    half = prepare(replace(cfg, balanced_share=0.5), Silent())
    assert len(half.train) == 40 and half.train[:20] == natural.train[:20] and half.train[20:] != natural.train[20:]
    with pytest.raises(UserError, match=r"--init-from .*nope.safetensors: no such bridge file"):
        prepare(replace(cfg, init_from=str(tmp_path / "nope.safetensors")), Silent())
    with pytest.raises(UserError, match=r"balanced_share=1.5 is a share.*--balanced-share"):
        prepare(replace(cfg, balanced_share=1.5), Silent())
    with torch.no_grad():
        for q in natural.trainer.bridge:
            q.add_(0.25)
    state = bridge_state_dict(natural.model, natural.trainer.lm_vocab)
    save_file(state, str(tmp_path / "b.safetensors"))
    again = prepare(replace(cfg, init_from=str(tmp_path / "b.safetensors")), Silent())
    loaded = bridge_state_dict(again.model, again.trainer.lm_vocab)
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    assert not all(torch.equal(v, bridge_state_dict(half.model, half.trainer.lm_vocab)[k]) for k, v in state.items())
