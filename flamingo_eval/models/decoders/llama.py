"""LLaMA-family decoder (LLaMA 1/2, SmolLM2, Mistral-style GQA): RMSNorm, rotary positions, SwiGLU.

Touvron et al. 2023, "LLaMA: Open and Efficient Foundation Language Models".
Shapes: B batch, T new tokens, S keys (cached + new), H heads, Hkv key/value heads, Dh head dim, D width.
Parameter names mirror HF ``LlamaForCausalLM`` so its checkpoints load by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from flamingo_eval.errors import UserError
from flamingo_eval.models.cache import KVCache
from flamingo_eval.models.decoders.base import AttnInputs, Decoder, lm_logits
from flamingo_eval.models.decoders.layers import RMSNorm, attend, rotary
from flamingo_eval.registry import DECODERS


@dataclass
class LlamaConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    head_dim: int | None = None
    attention_bias: bool = False
    mlp_bias: bool = False


class LlamaAttention(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = cfg.head_dim or cfg.hidden_size // cfg.num_attention_heads
        self.theta = cfg.rope_theta
        d, hd, b = cfg.hidden_size, self.head_dim, cfg.attention_bias
        self.q_proj = nn.Linear(d, self.n_heads * hd, bias=b)
        self.k_proj = nn.Linear(d, self.n_kv * hd, bias=b)
        self.v_proj = nn.Linear(d, self.n_kv * hd, bias=b)
        self.o_proj = nn.Linear(self.n_heads * hd, d, bias=b)

    def forward(self, x: Tensor, attn: AttnInputs, cache: KVCache | None, layer: int) -> Tensor:
        bsz, t, _ = x.shape
        q = self.q_proj(x).view(bsz, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)
        k = self.k_proj(x).view(bsz, t, self.n_kv, self.head_dim).transpose(1, 2)  # (B, Hkv, T, Dh)
        v = self.v_proj(x).view(bsz, t, self.n_kv, self.head_dim).transpose(1, 2)
        q = rotary(q, attn.positions, self.theta, self.head_dim, attn.memo)
        k = rotary(k, attn.positions, self.theta, self.head_dim, attn.memo)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, Hkv, S, Dh)
        out = attend(q, k, v, attn.mask, causal_only=attn.causal_only)  # (B, H, T, Dh)
        return self.o_proj(out.transpose(1, 2).reshape(bsz, t, -1))


class LlamaMLP(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        d, f, b = cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias
        self.gate_proj = nn.Linear(d, f, bias=b)
        self.up_proj = nn.Linear(d, f, bias=b)
        self.down_proj = nn.Linear(f, d, bias=b)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaBlock(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = LlamaAttention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = LlamaMLP(cfg)

    def forward(self, x: Tensor, attn: AttnInputs, cache: KVCache | None, layer: int) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), attn, cache, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


class _LlamaBody(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([LlamaBlock(cfg) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


@DECODERS.register("llama")
class LlamaDecoder(Decoder):
    """HF ``LlamaForCausalLM`` layout: ``model.embed_tokens``, ``model.layers``, ``model.norm``, ``lm_head``."""

    family = "llama"
    model_types = ("llama", "mistral")
    """SmolLM/SmolLM2 ship as ``llama``. Mistral's sliding window is not modelled: exact for prompts shorter than
    ``sliding_window`` (4096 for Mistral-7B), far beyond few-shot evaluation prompts."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.hidden_size = cfg.hidden_size
        self.vocab_size = cfg.vocab_size
        self.model = _LlamaBody(cfg)
        self.lm_head = None if cfg.tie_word_embeddings else nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    @property
    def blocks(self) -> nn.ModuleList:  # type: ignore[override]
        return self.model.layers

    def embed(self, input_ids: Tensor, positions: Tensor | None = None) -> Tensor:
        return self.model.embed_tokens(input_ids)

    def head(self, x: Tensor) -> Tensor:
        x = self.model.norm(x)
        if self.lm_head is None:
            return lm_logits(x, self.model.embed_tokens.weight)
        return lm_logits(x, self.lm_head.weight, self.lm_head.bias)

    def input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def output_embeddings(self) -> nn.Linear | None:
        return self.lm_head

    def _set_input_embeddings(self, emb: nn.Embedding) -> None:
        self.model.embed_tokens = emb

    def _set_output_embeddings(self, head: nn.Linear) -> None:
        self.lm_head = head

    @classmethod
    def from_hf_config(cls, config: dict[str, Any]) -> LlamaDecoder:
        scaling = config.get("rope_scaling")
        if scaling and scaling.get("rope_type", scaling.get("type")) not in (None, "default"):
            raise UserError(f"llama decoder: rope_scaling {scaling} is not supported (only plain RoPE)")
        fields = LlamaConfig.__dataclass_fields__
        kw = {k: v for k, v in config.items() if k in fields and v is not None}
        rope = config.get("rope_parameters") or {}
        if "rope_theta" not in kw and "rope_theta" in rope:
            kw["rope_theta"] = rope["rope_theta"]
        kw.setdefault("num_key_value_heads", config["num_attention_heads"])
        return cls(LlamaConfig(**kw))
