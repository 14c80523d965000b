"""OPT decoder: learned absolute positions (offset 2), LayerNorm + ReLU FFN, tied head.

Zhang et al. 2022, "OPT: Open Pre-trained Transformer Language Models".
Shapes: B batch, T new tokens, S keys (cached + new), H heads, Dh head dim, D width, E word-embedding width.

Names mirror HF ``OPTForCausalLM`` (``model.decoder.embed_tokens``, ``embed_positions``, ``layers.{i}.self_attn``,
``self_attn_layer_norm``, ``fc1``/``fc2``, ``final_layer_norm``, optional ``project_in``/``project_out``).
Checkpoints saved from ``OPTModel`` (e.g. ``facebook/opt-125m``) lack the ``model.`` prefix; ``hf_key_map``
adds it. Learned positions need ``embed(ids, positions)``: the left-padding-aware ``AttnInputs.positions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from flamingo_eval.errors import UserError
from flamingo_eval.models.cache import KVCache
from flamingo_eval.models.decoders.base import AttnInputs, Decoder, lm_logits
from flamingo_eval.models.decoders.layers import ACTIVATIONS, attend
from flamingo_eval.registry import DECODERS

POSITION_OFFSET = 2
"""OPT's position table has 2 leading rows (a fairseq padding_idx leftover): row = position + 2."""


@dataclass
class OPTConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    ffn_dim: int
    max_position_embeddings: int = 2048
    word_embed_proj_dim: int | None = None
    do_layer_norm_before: bool = True
    remove_final_layer_norm: bool = False
    layer_norm_elementwise_affine: bool = True
    enable_bias: bool = True
    activation_function: str = "relu"
    tie_word_embeddings: bool = True


def _layer_norm(cfg: OPTConfig) -> nn.LayerNorm:
    return nn.LayerNorm(cfg.hidden_size, elementwise_affine=cfg.layer_norm_elementwise_affine)


class OPTAttention(nn.Module):
    def __init__(self, cfg: OPTConfig) -> None:
        super().__init__()
        self.n_heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        d, b = cfg.hidden_size, cfg.enable_bias
        self.k_proj = nn.Linear(d, d, bias=b)
        self.v_proj = nn.Linear(d, d, bias=b)
        self.q_proj = nn.Linear(d, d, bias=b)
        self.out_proj = nn.Linear(d, d, bias=b)

    def forward(self, x: Tensor, attn: AttnInputs, cache: KVCache | None, layer: int) -> Tensor:
        bsz, t, _ = x.shape
        q = self.q_proj(x).view(bsz, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)
        k = self.k_proj(x).view(bsz, t, self.n_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(bsz, t, self.n_heads, self.head_dim).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, H, S, Dh)
        out = attend(q, k, v, attn.mask, causal_only=attn.causal_only)  # (B, H, T, Dh)
        return self.out_proj(out.transpose(1, 2).reshape(bsz, t, -1))


class OPTBlock(nn.Module):
    def __init__(self, cfg: OPTConfig) -> None:
        super().__init__()
        self.pre_norm = cfg.do_layer_norm_before
        self.self_attn = OPTAttention(cfg)
        self.self_attn_layer_norm = _layer_norm(cfg)
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.ffn_dim, bias=cfg.enable_bias)
        self.fc2 = nn.Linear(cfg.ffn_dim, cfg.hidden_size, bias=cfg.enable_bias)
        self.final_layer_norm = _layer_norm(cfg)
        self.act = ACTIVATIONS[cfg.activation_function]

    def forward(self, x: Tensor, attn: AttnInputs, cache: KVCache | None, layer: int) -> Tensor:
        if self.pre_norm:  # 125m, 1.3b, ...: pre-LN
            x = x + self.self_attn(self.self_attn_layer_norm(x), attn, cache, layer)
            return x + self.fc2(self.act(self.fc1(self.final_layer_norm(x))))
        # 350m: post-LN
        x = self.self_attn_layer_norm(x + self.self_attn(x, attn, cache, layer))
        return self.final_layer_norm(x + self.fc2(self.act(self.fc1(x))))


class _OPTDecoderStack(nn.Module):
    def __init__(self, cfg: OPTConfig) -> None:
        super().__init__()
        e = cfg.word_embed_proj_dim or cfg.hidden_size
        self.embed_tokens = nn.Embedding(cfg.vocab_size, e)
        self.embed_positions = nn.Embedding(cfg.max_position_embeddings + POSITION_OFFSET, cfg.hidden_size)
        self.project_in = nn.Linear(e, cfg.hidden_size, bias=False) if e != cfg.hidden_size else None
        self.project_out = nn.Linear(cfg.hidden_size, e, bias=False) if e != cfg.hidden_size else None
        self.layers = nn.ModuleList([OPTBlock(cfg) for _ in range(cfg.num_hidden_layers)])
        keep_final = cfg.do_layer_norm_before and not cfg.remove_final_layer_norm
        self.final_layer_norm = _layer_norm(cfg) if keep_final else None


class _OPTModel(nn.Module):
    def __init__(self, cfg: OPTConfig) -> None:
        super().__init__()
        self.decoder = _OPTDecoderStack(cfg)


@DECODERS.register("opt")
class OPTDecoder(Decoder):
    """``model.decoder.{embed_tokens, embed_positions, layers, final_layer_norm}``; head tied unless configured."""

    family = "opt"
    model_types = ("opt",)

    def __init__(self, cfg: OPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.hidden_size = cfg.hidden_size
        self.vocab_size = cfg.vocab_size
        self.model = _OPTModel(cfg)
        e = cfg.word_embed_proj_dim or cfg.hidden_size
        self.lm_head = None if cfg.tie_word_embeddings else nn.Linear(e, cfg.vocab_size, bias=False)

    @property
    def blocks(self) -> nn.ModuleList:  # type: ignore[override]
        # A property, not an attribute: a second registration would duplicate every key in state_dict().
        return self.model.decoder.layers

    def embed(self, input_ids: Tensor, positions: Tensor | None = None) -> Tensor:
        if positions is None:
            raise ValueError("OPT has learned positions: call embed(input_ids, attn.positions)")
        dec = self.model.decoder
        x = dec.embed_tokens(input_ids)  # (B, T, E)
        if dec.project_in is not None:
            x = dec.project_in(x)  # (B, T, D)
        return x + dec.embed_positions(positions + POSITION_OFFSET)

    def head(self, x: Tensor) -> Tensor:
        dec = self.model.decoder
        if dec.final_layer_norm is not None:
            x = dec.final_layer_norm(x)
        if dec.project_out is not None:
            x = dec.project_out(x)  # (B, T, E)
        if self.lm_head is None:
            return lm_logits(x, dec.embed_tokens.weight)
        return lm_logits(x, self.lm_head.weight, self.lm_head.bias)

    def input_embeddings(self) -> nn.Embedding:
        return self.model.decoder.embed_tokens

    def output_embeddings(self) -> nn.Linear | None:
        return self.lm_head

    def _set_input_embeddings(self, emb: nn.Embedding) -> None:
        self.model.decoder.embed_tokens = emb

    def _set_output_embeddings(self, head: nn.Linear) -> None:
        self.lm_head = head

    @classmethod
    def hf_key_map(cls, key: str) -> str:
        if key.startswith("decoder."):  # saved from OPTModel (no "model." prefix)
            return "model." + key
        return key

    @classmethod
    def from_hf_config(cls, config: dict[str, Any]) -> OPTDecoder:
        act = config.get("activation_function", "relu")
        if act not in ACTIVATIONS:
            raise UserError(f"opt decoder: activation_function {act!r} not supported; known: {sorted(ACTIVATIONS)}")
        fields = OPTConfig.__dataclass_fields__
        kw = {k: v for k, v in config.items() if k in fields and v is not None}
        kw["remove_final_layer_norm"] = bool(config.get("_remove_final_layer_norm", False))
        return cls(OPTConfig(**kw))
