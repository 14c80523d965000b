"""Decoder families vs Hugging Face on tiny random models (fp32, CPU).

For each family: logits equal HF's on an unpadded batch; left padding does not change a sequence's
logits; KV-cached decoding equals the uncached forward; ``resize_vocab`` keeps old rows; loading is strict.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from flamingo_eval.errors import UserError  # noqa: E402
from flamingo_eval.models.cache import KVCache  # noqa: E402
from flamingo_eval.models.decoders import Decoder, MptDecoder  # noqa: E402
from flamingo_eval.models.hf_lm import (  # noqa: E402
    build_decoder,
    decoder_from_hf_model,
    family_table,
    load_hf_decoder,
)
from flamingo_eval.registry import DECODERS  # noqa: E402

VOCAB = 128
TOL = 1e-4


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    """O(1)-scale random weights (HF's 0.02 init makes every logit ~0 and hides bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
            elif name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def _llama() -> nn.Module:
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    return transformers.LlamaForCausalLM(cfg)


def _mpt(n_heads: int = 4, d_model: int = 64, **attn_config: float) -> nn.Module:
    cfg = transformers.MptConfig(d_model=d_model, n_heads=n_heads, n_layers=2, vocab_size=VOCAB, max_seq_len=32,
                                 attn_config=attn_config or None)
    return transformers.MptForCausalLM(cfg)


def _neox(parallel: bool = True) -> nn.Module:
    cfg = transformers.GPTNeoXConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128, rotary_pct=0.5, use_parallel_residual=parallel)
    return transformers.GPTNeoXForCausalLM(cfg)


def _opt(pre_norm: bool = True) -> nn.Module:
    cfg = transformers.OPTConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 ffn_dim=128, max_position_embeddings=64, word_embed_proj_dim=32,
                                 do_layer_norm_before=pre_norm, pad_token_id=1)
    return transformers.OPTForCausalLM(cfg)


FAMILIES: dict[str, Callable[[], nn.Module]] = {
    "llama": _llama,
    "mpt": _mpt,
    "mpt-6heads": lambda: _mpt(n_heads=6, d_model=48),
    "mpt-clip-scale": lambda: _mpt(clip_qkv=0.5, softmax_scale=0.5),
    "gpt_neox": _neox,
    "gpt_neox-sequential": lambda: _neox(parallel=False),
    "opt": _opt,
    "opt-postnorm": lambda: _opt(pre_norm=False),
}

MOSAIC_NAMES = [("norm_1", "ln_1"), ("norm_2", "ln_2"), ("ffn.up_proj", "mlp.mlp_up"),
                ("ffn.down_proj", "mlp.mlp_down"), ("transformer.norm_f", "transformer.ln_f")]


def _to_mosaic(hf: nn.Module) -> tuple[dict, dict[str, Tensor]]:
    """An HF MPT model's config and weights in MosaicGPT (OpenFlamingo-3B LM) naming."""
    c = hf.config
    config = {"model_type": "mosaic_gpt", "d_model": c.d_model, "n_heads": c.n_heads, "n_layers": c.n_layers,
              "mlp_ratio": 4, "alibi": True, "alibi_bias_max": 8, "vocab_size": c.vocab_size,
              "max_seq_len": c.max_seq_len, "no_bias": True, "attn_qk_ln": False}
    state = {}
    for k, v in hf.state_dict().items():
        if k == "lm_head.weight":
            continue  # MosaicGPT has no head module: logits use wte
        for ours, theirs in MOSAIC_NAMES:
            k = k.replace(ours, theirs)
        state[k] = v
    return config, state


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def pair(request: pytest.FixtureRequest) -> tuple[nn.Module, Decoder]:
    hf = _randomize(FAMILIES[request.param](), seed=0)
    return hf, decoder_from_hf_model(hf)


def _ids(b: int, t: int, seed: int = 1) -> Tensor:
    return torch.randint(2, VOCAB, (b, t), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_matches_hf_unpadded(pair: tuple[nn.Module, Decoder]) -> None:
    hf, ours = pair
    ids = _ids(3, 12)
    diff = (hf(ids).logits - ours(ids)).abs().max().item()
    assert diff <= TOL, diff


@torch.no_grad()
def test_left_padding_invariant(pair: tuple[nn.Module, Decoder]) -> None:
    _, ours = pair
    lengths = [12, 5, 9]
    ids = _ids(3, 12)
    valid = torch.arange(12)[None, :] >= (12 - torch.tensor(lengths))[:, None]  # (B, T) left padding
    batched = ours(ids.masked_fill(~valid, 0), key_valid=valid)
    for b, n in enumerate(lengths):
        alone = ours(ids[b : b + 1, 12 - n :])
        diff = (batched[b, 12 - n :] - alone[0]).abs().max().item()
        assert diff <= TOL, (b, diff)


@torch.no_grad()
def test_kv_cache_matches_full_forward(pair: tuple[nn.Module, Decoder]) -> None:
    _, ours = pair
    ids = _ids(2, 12, seed=3)
    valid = torch.ones(2, 12, dtype=torch.bool)
    valid[1, :4] = False  # row 1 is left padded
    full = ours(ids, key_valid=valid)
    cache = KVCache(len(ours.blocks))
    steps = [ours(ids[:, :7], key_valid=valid[:, :7], cache=cache)]
    for t in range(7, 12):
        steps.append(ours(ids[:, t : t + 1], key_valid=valid[:, : t + 1], cache=cache))
    cached = torch.cat(steps, dim=1)
    diff = (cached - full)[valid].abs().max().item()
    assert diff <= TOL, diff


@torch.no_grad()
def test_resize_vocab_keeps_old_rows(pair: tuple[nn.Module, Decoder]) -> None:
    hf, _ = pair
    ours = decoder_from_hf_model(hf)  # a private copy: resizing mutates
    ids = _ids(1, 8)
    before = ours(ids)
    old_emb = ours.input_embeddings().weight.clone()
    ours.resize_vocab(VOCAB + 3)
    assert ours.input_embeddings().weight.shape[0] == VOCAB + 3
    assert torch.equal(ours.input_embeddings().weight[:VOCAB], old_emb)
    after = ours(ids)
    assert after.shape[-1] == VOCAB + 3
    assert (after[..., :VOCAB] - before).abs().max().item() <= TOL


@torch.no_grad()
def test_mosaic_gpt_naming_matches_hf_mpt() -> None:
    hf = _randomize(_mpt(), seed=5)
    config, state = _to_mosaic(hf)
    ours = build_decoder(MptDecoder, config, state, torch.float32, source="mosaic")
    ids = _ids(2, 10)
    assert (hf(ids).logits - ours(ids)).abs().max().item() <= TOL


class _QKLayerNormed(nn.Module):
    """Wraps HF MPT's Wqkv so its output gets MosaicGPT's QK LayerNorm (HF MPT ignores ``qk_ln``)."""

    def __init__(self, wqkv: nn.Linear, d: int) -> None:
        super().__init__()
        self.wqkv, self.d = wqkv, d
        self.q_ln, self.k_ln = nn.LayerNorm(d, bias=False), nn.LayerNorm(d, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.wqkv(x).split(self.d, dim=-1)
        return torch.cat([self.q_ln(q), self.k_ln(k), v], dim=-1)


@torch.no_grad()
def test_mosaic_gpt_qk_layernorm() -> None:
    hf = _mpt()
    for block in hf.transformer.blocks:
        block.attn.Wqkv = _QKLayerNormed(block.attn.Wqkv, 64)
    hf = _randomize(hf, seed=6)
    config, state = _to_mosaic(hf)
    config["attn_qk_ln"] = True
    state = {k.replace("Wqkv.wqkv.", "Wqkv.").replace("Wqkv.q_ln", "q_ln").replace("Wqkv.k_ln", "k_ln"): v
             for k, v in state.items()}
    ours = build_decoder(MptDecoder, config, state, torch.float32, source="mosaic-qkln")
    ids = _ids(2, 10)
    assert (hf(ids).logits - ours(ids)).abs().max().item() <= TOL


def test_load_from_directory(tmp_path) -> None:
    hf = _randomize(_neox(), seed=7)
    hf.save_pretrained(tmp_path / "st")
    ids = _ids(2, 8)
    with torch.no_grad():
        ref = hf(ids).logits
        assert (load_hf_decoder(tmp_path / "st")(ids) - ref).abs().max().item() <= TOL
    # Released NeoX checkpoints call the head `embed_out` (transformers 5: `lm_head`); .bin format.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_text((tmp_path / "st" / "config.json").read_text())
    state = {k.replace("lm_head.", "embed_out."): v for k, v in hf.state_dict().items()}
    state["gpt_neox.layers.0.attention.masked_bias"] = torch.tensor(-1e9)  # legacy buffer: ignored
    torch.save(state, tmp_path / "bin" / "pytorch_model.bin")
    with torch.no_grad():
        assert (load_hf_decoder(tmp_path / "bin")(ids) - ref).abs().max().item() <= TOL


def _llama_state() -> tuple[dict, dict[str, Tensor]]:
    hf = _llama()
    return hf.config.to_dict(), dict(hf.state_dict())


def test_missing_key_is_named() -> None:
    config, state = _llama_state()
    del state["model.layers.1.mlp.up_proj.weight"]
    cls = type(decoder_from_hf_model(_llama()))
    with pytest.raises(UserError, match=r"missing: model\.layers\.1\.mlp\.up_proj\.weight"):
        build_decoder(cls, config, state, torch.float32, source="t")


def test_unexpected_key_is_named() -> None:
    config, state = _llama_state()
    state["model.layers.0.self_attn.extra.weight"] = torch.zeros(2)
    cls = type(decoder_from_hf_model(_llama()))
    with pytest.raises(UserError, match=r"unexpected: model\.layers\.0\.self_attn\.extra\.weight"):
        build_decoder(cls, config, state, torch.float32, source="t")


def test_wrong_shape_is_named() -> None:
    config, state = _llama_state()
    state["model.norm.weight"] = torch.ones(65)
    cls = type(decoder_from_hf_model(_llama()))
    with pytest.raises(UserError, match=r"wrong shape: model\.norm\.weight \(checkpoint \(65,\), model \(64,\)\)"):
        build_decoder(cls, config, state, torch.float32, source="t")


def test_the_family_table_is_what_the_decoders_declare(monkeypatch) -> None:
    """A family declares the HF ``model_type``s it loads; nothing else lists them (adding a family: 3 files)."""
    assert family_table() == {"llama": "llama", "mistral": "llama", "mpt": "mpt", "mosaic_gpt": "mpt",
                              "gpt_neox": "gpt_neox", "opt": "opt"}
    assert all(DECODERS.get(f).model_types for f in DECODERS.names()), "every family loads some model_type"

    class Clash(MptDecoder):
        family = "clash"
        model_types = ("mistral",)

    monkeypatch.setitem(DECODERS._items, "clash", Clash)
    with pytest.raises(ValueError, match="'mistral' is claimed by the decoder families clash and llama"):
        family_table()


def test_unknown_model_type(tmp_path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(UserError, match="unsupported LM model_type 'gpt2'; supported: .*gpt_neox"):
        load_hf_decoder(tmp_path)
