"""GPT-NeoX decoder (Pythia, RedPajama-INCITE = OpenFlamingo-4B's LM): partial rotary, parallel residual.

Black et al. 2022, "GPT-NeoX-20B: An Open-Source Autoregressive Language Model";
Su et al. 2021, "RoFormer" (rotary positions, applied to the first ``rotary_pct`` of each head).
Shapes: B batch, T new tokens, S keys (cached + new), H heads, Dh head dim, D width.

Names mirror HF ``GPTNeoXForCausalLM`` (``gpt_neox.embed_in``, ``gpt_neox.layers.{i}.attention.query_key_value``,
``...dense``, ``mlp.dense_h_to_4h``/``dense_4h_to_h``, ``gpt_neox.final_layer_norm``). The head is called
``embed_out`` as in the released checkpoints and OpenFlamingo's ``checkpoint.pt``; transformers 5 names it
``lm_head``, which ``hf_key_map`` renames (see PROTOCOLS.md "Checkpoint pitfalls").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from flamingo_eval.errors import UserError
from flamingo_eval.models.cache import KVCache
from flamingo_eval.models.decoders.base import AttnInputs, Decoder, lm_logits
from flamingo_eval.models.decoders.layers import ACTIVATIONS, attend, rotary
from flamingo_eval.registry import DECODERS


@dataclass
class GPTNeoXConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    rotary_pct: float = 0.25
    rotary_emb_base: float = 10000.0
    layer_norm_eps: float = 1e-5
    use_parallel_residual: bool = True
    hidden_act: str = "gelu"
    attention_bias: bool = True
    tie_word_embeddings: bool = False


class GPTNeoXAttention(nn.Module):
    def __init__(self, cfg: GPTNeoXConfig) -> None:
        super().__init__()
        self.n_heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.rot_dim = int(self.head_dim * cfg.rotary_pct)
        self.theta = cfg.rotary_emb_base
        d, b = cfg.hidden_size, cfg.attention_bias
        self.query_key_value = nn.Linear(d, 3 * d, bias=b)
        self.dense = nn.Linear(d, d, bias=b)

    def forward(self, x: Tensor, attn: AttnInputs, cache: KVCache | None, layer: int) -> Tensor:
        bsz, t, _ = x.shape
        # NeoX fuses q/k/v per head: the 3D output is H groups of [q_h, k_h, v_h], not [q, k, v].
        qkv = self.query_key_value(x).view(bsz, t, self.n_heads, 3 * self.head_dim).transpose(1, 2)  # (B, H, T, 3Dh)
        q, k, v = qkv.chunk(3, dim=-1)  # 3 x (B, H, T, Dh)
        q = rotary(q, attn.positions, self.theta, self.rot_dim, attn.memo)
        k = rotary(k, attn.positions, self.theta, self.rot_dim, attn.memo)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, H, S, Dh)
        out = attend(q, k, v, attn.mask, causal_only=attn.causal_only)  # (B, H, T, Dh)
        return self.dense(out.transpose(1, 2).reshape(bsz, t, -1))


class GPTNeoXMLP(nn.Module):
    def __init__(self, cfg: GPTNeoXConfig) -> None:
        super().__init__()
        self.dense_h_to_4h = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.dense_4h_to_h = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.act = ACTIVATIONS[cfg.hidden_act]

    def forward(self, x: Tensor) -> Tensor:
        return self.dense_4h_to_h(self.act(self.dense_h_to_4h(x)))


class GPTNeoXBlock(nn.Module):
    def __init__(self, cfg: GPTNeoXConfig) -> None:
        super().__init__()
        self.parallel = cfg.use_parallel_residual
        self.input_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.post_attention_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.attention = GPTNeoXAttention(cfg)
        self.mlp = GPTNeoXMLP(cfg)

    def forward(self, x: Tensor, attn: AttnInputs, cache: KVCache | None, layer: int) -> Tensor:
        a = self.attention(self.input_layernorm(x), attn, cache, layer)
        if self.parallel:  # x + attn(ln1(x)) + mlp(ln2(x))
            return x + a + self.mlp(self.post_attention_layernorm(x))
        x = x + a
        return x + self.mlp(self.post_attention_layernorm(x))


class _GPTNeoXBody(nn.Module):
    def __init__(self, cfg: GPTNeoXConfig) -> None:
        super().__init__()
        self.embed_in = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([GPTNeoXBlock(cfg) for _ in range(cfg.num_hidden_layers)])
        self.final_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)


@DECODERS.register("gpt_neox")
class GPTNeoXDecoder(Decoder):
    """``gpt_neox.embed_in``, ``gpt_neox.layers``, ``gpt_neox.final_layer_norm``, ``embed_out`` (untied head)."""

    family = "gpt_neox"
    model_types = ("gpt_neox",)

    def __init__(self, cfg: GPTNeoXConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.hidden_size = cfg.hidden_size
        self.vocab_size = cfg.vocab_size
        self.gpt_neox = _GPTNeoXBody(cfg)
        self.embed_out = None if cfg.tie_word_embeddings else nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    @property
    def blocks(self) -> nn.ModuleList:  # type: ignore[override]
        # A property, not an attribute: a second registration would duplicate every key in state_dict().
        return self.gpt_neox.layers

    def embed(self, input_ids: Tensor, positions: Tensor | None = None) -> Tensor:
        return self.gpt_neox.embed_in(input_ids)

    def head(self, x: Tensor) -> Tensor:
        x = self.gpt_neox.final_layer_norm(x)
        if self.embed_out is None:
            return lm_logits(x, self.gpt_neox.embed_in.weight)
        return lm_logits(x, self.embed_out.weight, self.embed_out.bias)

    def input_embeddings(self) -> nn.Embedding:
        return self.gpt_neox.embed_in

    def output_embeddings(self) -> nn.Linear | None:
        return self.embed_out

    def _set_input_embeddings(self, emb: nn.Embedding) -> None:
        self.gpt_neox.embed_in = emb

    def _set_output_embeddings(self, head: nn.Linear) -> None:
        self.embed_out = head

    @classmethod
    def hf_key_map(cls, key: str) -> str:
        if key.startswith("lm_head."):  # transformers 5 name of the head
            return "embed_out." + key[len("lm_head."):]
        return key

    @classmethod
    def from_hf_config(cls, config: dict[str, Any]) -> GPTNeoXDecoder:
        """Reads both the legacy keys (``rotary_pct``, ``rotary_emb_base``) and transformers 5 ``rope_parameters``."""
        rope = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
        if rope.get("rope_type", rope.get("type", "default")) not in (None, "default"):
            raise UserError(f"gpt_neox decoder: rope scaling {rope} is not supported (only plain RoPE)")
        act = config.get("hidden_act", "gelu")
        if act not in ACTIVATIONS:
            raise UserError(f"gpt_neox decoder: hidden_act {act!r} not supported; known: {sorted(ACTIVATIONS)}")
        fields = GPTNeoXConfig.__dataclass_fields__
        kw = {k: v for k, v in config.items() if k in fields and v is not None}
        if "partial_rotary_factor" in rope:
            kw["rotary_pct"] = rope["partial_rotary_factor"]
        if "rope_theta" in rope:
            kw["rotary_emb_base"] = rope["rope_theta"]
        kw.setdefault("intermediate_size", 4 * config["hidden_size"])
        head_dim = config["hidden_size"] // config["num_attention_heads"]
        if int(head_dim * kw.get("rotary_pct", 0.25)) % 2:
            raise UserError(f"gpt_neox decoder: rotary dim {head_dim}*{kw.get('rotary_pct')} must be even")
        return cls(GPTNeoXConfig(**kw))
