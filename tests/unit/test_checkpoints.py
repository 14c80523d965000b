"""OpenFlamingo checkpoint loading: strict accounting, training checkpoints, aliases, refused pickles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flamingo_eval.errors import UserError
from flamingo_eval.models.checkpoints import load_flamingo_checkpoint, read_checkpoint

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "parity"


def _model(family: str = "llama", **overrides: object):  # type: ignore[no-untyped-def]
    from flamingo_eval.models.build import build_model
    from tests.numerics.test_parity import model_cfg

    meta = json.loads((ROOT / family / "expected.json").read_text())
    return build_model(model_cfg(family, meta, checkpoint=None, **overrides)).model


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return read_checkpoint(ROOT / "llama" / "checkpoint.pt")


def _save(tmp_path: Path, obj: object, name: str = "ckpt.pt") -> Path:
    path = tmp_path / name
    torch.save(obj, path)
    return path


def test_flat_and_training_checkpoints_load_the_same(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    flat, train = _model(), _model()
    report = load_flamingo_checkpoint(flat, ROOT / "llama" / "checkpoint.pt")
    assert report.loaded == len(state) and report.aliases == 0
    wrapped = {"epoch": 3, "model_state_dict": {f"module.{k}": v for k, v in state.items()},
               "optimizer_state_dict": {"state": {}, "param_groups": []}}
    load_flamingo_checkpoint(train, _save(tmp_path, wrapped))
    for (k, a), (_, b) in zip(flat.state_dict().items(), train.state_dict().items()):
        assert torch.equal(a, b), k
    assert all(blk.attn_gate.item() != 0 for blk in flat.xattn.values())


def test_safetensors_checkpoint(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "ckpt.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    assert load_flamingo_checkpoint(_model(), path).loaded == len(state)


def test_missing_extra_and_wrong_shape_keys_fail_in_one_message(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    bad = dict(state)
    del bad["perceiver.layers.0.0.to_q.weight"]
    bad["lang_encoder.model.layers.3.gated_cross_attn_layer.extra_gate"] = torch.zeros(1)
    bad["perceiver.latents"] = torch.zeros(3, 3)
    with pytest.raises(UserError) as err:
        load_flamingo_checkpoint(_model(), _save(tmp_path, bad))
    msg = str(err.value)
    assert "missing: xattn" not in msg and "missing: perceiver.layers.0.0.to_q.weight" in msg
    assert "unexpected: lang_encoder.model.layers.3.gated_cross_attn_layer.extra_gate" in msg
    assert "wrong shape: perceiver.latents (checkpoint (3, 3), model (8, 32))" in msg


def test_cross_attention_layout_mismatch_is_named(state: dict[str, torch.Tensor]) -> None:
    model = _model(flamingo={"cross_attn_every_n_layers": 2, **json.loads(
        (ROOT / "llama" / "expected.json").read_text())["bridge"]})
    with pytest.raises(UserError, match=r"missing: xattn\.1\..*cross_attn_every_n_layers=2"):
        load_flamingo_checkpoint(model, ROOT / "llama" / "checkpoint.pt")


def test_duplicate_aliases_are_consumed_only_when_equal(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    alias = {**state, **{k.replace("model.layers.3.gated_cross_attn_layer", "gated_cross_attn_layers.3"): v
                         for k, v in state.items() if "gated_cross_attn_layer." in k}}
    report = load_flamingo_checkpoint(_model(), _save(tmp_path, alias))
    assert report.aliases == sum("gated_cross_attn_layer." in k for k in state)
    alias["lang_encoder.gated_cross_attn_layers.3.attn_gate"] = torch.tensor([9.0])
    with pytest.raises(UserError, match="conflicting duplicates: lang_encoder.gated_cross_attn_layers.3.attn_gate"):
        load_flamingo_checkpoint(_model(), _save(tmp_path, alias))


def test_full_training_state_dict_with_decoder_layers(tmp_path: Path) -> None:
    """A full state dict (frozen LM layers under both names) maps onto ours via hf_key_map (MosaicGPT names)."""
    model = _model("mosaic_gpt")
    ckpt = read_checkpoint(ROOT / "mosaic_gpt" / "checkpoint.pt")
    from safetensors.torch import load_file

    for k, v in load_file(str(ROOT / "mosaic_gpt" / "lm" / "model.safetensors")).items():
        if ".blocks." in k:
            head, idx, rest = k.split(".", 3)[1:]
            ckpt[f"lang_encoder.transformer.blocks.{idx}.decoder_layer.{rest}"] = v
            ckpt[f"lang_encoder.old_decoder_blocks.{idx}.{rest}"] = v
    ckpt["lang_encoder.transformer.ln_f.weight"] = model.lang.transformer.norm_f.weight.detach().clone()
    report = load_flamingo_checkpoint(model, _save(tmp_path, {"model_state_dict": ckpt}))
    assert report.aliases > 0 and report.loaded > 37


def test_untied_head_that_grew_is_reported_not_invented(state: dict[str, torch.Tensor]) -> None:
    model = _model()
    vocab = model.lang.vocab_size
    with pytest.raises(UserError, match=r"untied output head \(lang.lm_head.weight\) that grew from 46 to 49"):
        load_flamingo_checkpoint(model, ROOT / "llama" / "checkpoint.pt", lm_vocab=vocab - 3)
    load_flamingo_checkpoint(model, ROOT / "llama" / "checkpoint.pt", lm_vocab=vocab - 3, new_head_rows="mean")


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.target), "w"))


def test_code_executing_pickle_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "pwned.txt"
    path = _save(tmp_path, {"perceiver.latents": torch.zeros(8, 32), "x": _Payload(target)})
    assert not target.exists()
    with pytest.raises(UserError, match="refused to load checkpoint"):
        read_checkpoint(path)
    assert not target.exists()


def test_not_a_state_dict(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="expected a state dict of tensors"):
        read_checkpoint(_save(tmp_path, {"epoch": 1}))
    with pytest.raises(UserError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("name,n", [("openflamingo-3b", 1), ("openflamingo-3b-instruct", 1), ("openflamingo-4b", 2),
                                    ("openflamingo-4b-instruct", 2), ("openflamingo-9b", 4),
                                    ("openflamingo-9b-deprecated", 4)])
def test_released_model_configs(name: str, n: int) -> None:
    from flamingo_eval.config_load import compose_config
    from flamingo_eval.models.build import build_model

    cfg = compose_config("easyvqa", name, ["model.checkpoint=/ckpt/checkpoint.pt"]).model
    assert cfg.flamingo == {"cross_attn_every_n_layers": n} and cfg.checkpoint == "/ckpt/checkpoint.pt"
    assert cfg.vision.options == {"model_name": "ViT-L-14", "pretrained": "openai", "config": None}
    assert cfg.lm.source == "hf"
    with pytest.raises(UserError, match="set model.path=DIR .* or model.checkpoint="):
        build_model(compose_config("easyvqa", name).model)
