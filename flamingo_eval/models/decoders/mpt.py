"""MPT / MosaicGPT decoder: ALiBi attention, fused Wqkv, bias-free LayerNorm, GELU MLP, tied head.

Press, Smith & Lewis 2022, "Train Short, Test Long: Attention with Linear Biases" (ALiBi);
MosaicML 2023, "MPT-7B" (https://www.mosaicml.com/blog/mpt-7b). OpenFlamingo-3B's LM
(``anas-awadalla/mpt-1b-redpajama-200b``) is the older MosaicGPT code with QK LayerNorm.
Shapes: B batch, T new tokens, S keys (cached + new), H heads, Dh head dim, D width.

Module names mirror HF ``MptForCausalLM`` (``transformer.wte``, ``transformer.blocks.{i}.norm_1``,
``attn.Wqkv``, ``attn.out_proj``, ``norm_2``, ``ffn.up_proj``/``ffn.down_proj``, ``transformer.norm_f``);
``hf_key_map`` renames MosaicGPT keys (``ln_1``, ``ln_2``, ``mlp.mlp_up``, ``mlp.mlp_down``, ``ln_f``).

ALiBi here is relative: the bias of key j for query i is ``-slope_h * (pos_i - pos_j)`` with
left-padding-aware positions. HF MPT adds ``slope_h * (j - S + 1)`` (absolute key index); per query row
the two differ by a constant, which softmax ignores, so logits agree while ours is padding invariant.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flamingo_eval.errors import UserError
from flamingo_eval.models.cache import KVCache
from flamingo_eval.models.decoders.base import AttnInputs, Decoder, lm_logits
from flamingo_eval.models.decoders.layers import attend
from flamingo_eval.registry import DECODERS


def alibi_slopes(n_heads: int, bias_max: float) -> Tensor:
    """(H,) ALiBi slopes ``2^(-bias_max * h / n)``; non-power-of-2 head counts interleave like MPT/HF.

    MosaicGPT's older code used ``n = n_heads`` without the interleave; both agree for power-of-2
    head counts, which is every released MPT/MosaicGPT model.
    """
    n = 2 ** math.ceil(math.log2(n_heads))
    slopes = 1.0 / torch.pow(2.0, torch.arange(1, n + 1, dtype=torch.float32) * (bias_max / n))
    if n != n_heads:
        slopes = torch.cat([slopes[1::2], slopes[::2]])[:n_heads]
    return slopes


@dataclass
class MptConfig:
    vocab_size: int
    d_model: int
    n_heads: int
    n_layers: int
    expansion_ratio: float = 4.0
    max_seq_len: int = 2048
    layer_norm_epsilon: float = 1e-5
    no_bias: bool = True
    alibi_bias_max: float = 8.0
    softmax_scale: float | None = None
    clip_qkv: float | None = None
    qk_ln: bool = False
    logit_scale: float | None = None


class MptAttention(nn.Module):
    def __init__(self, cfg: MptConfig) -> None:
        super().__init__()
        d, bias = cfg.d_model, not cfg.no_bias
        self.n_heads = cfg.n_heads
        self.head_dim = d // cfg.n_heads
        self.clip_qkv = cfg.clip_qkv
        # SDPA scales by 1/sqrt(Dh); a configured softmax_scale is folded into q instead.
        self.q_scale = None if cfg.softmax_scale is None else cfg.softmax_scale * math.sqrt(self.head_dim)
        self.Wqkv = nn.Linear(d, 3 * d, bias=bias)
        # QK LayerNorm (MosaicGPT / OpenFlamingo-3B) normalises the full-width q and k before the head split.
        self.q_ln = nn.LayerNorm(d, eps=cfg.layer_norm_epsilon, bias=bias) if cfg.qk_ln else None
        self.k_ln = nn.LayerNorm(d, eps=cfg.layer_norm_epsilon, bias=bias) if cfg.qk_ln else None
        self.out_proj = nn.Linear(d, d, bias=bias)
        self.alibi_bias_max = cfg.alibi_bias_max  # slopes are rebuilt per call: no buffers to load

    def forward(self, x: Tensor, attn: AttnInputs, cache: KVCache | None, layer: int) -> Tensor:
        bsz, t, d = x.shape
        qkv = self.Wqkv(x)  # (B, T, 3D)
        if self.clip_qkv:
            qkv = qkv.clamp(min=-self.clip_qkv, max=self.clip_qkv)
        q, k, v = qkv.split(d, dim=-1)  # 3 x (B, T, D)
        if self.q_ln is not None and self.k_ln is not None:
            q, k = self.q_ln(q), self.k_ln(k)
        q = q.view(bsz, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)
        k = k.view(bsz, t, self.n_heads, self.head_dim).transpose(1, 2)
        v = v.view(bsz, t, self.n_heads, self.head_dim).transpose(1, 2)
        if self.q_scale is not None:
            q = q * self.q_scale
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, H, S, Dh)
        out = attend(q, k, v, attn.mask, self._alibi(attn, q.dtype))  # (B, H, T, Dh)
        return self.out_proj(out.transpose(1, 2).reshape(bsz, t, d))

    def _alibi(self, attn: AttnInputs, dtype: torch.dtype) -> Tensor:
        """(B, H, T, S) ALiBi bias, -inf where ``attn.mask`` is False; built once per forward for all layers."""
        key = ("alibi", self.n_heads, self.alibi_bias_max, dtype)
        bias = attn.memo.get(key)
        if bias is None:
            rel = attn.key_positions[:, None, None, :] - attn.positions[:, None, :, None]  # (B, 1, T, S)
            slopes = alibi_slopes(self.n_heads, self.alibi_bias_max).to(rel.device)  # (H,)
            bias = (rel.float() * slopes[None, :, None, None]).masked_fill(~attn.mask, float("-inf")).to(dtype)
            attn.memo[key] = bias
        return bias


class MptMLP(nn.Module):
    def __init__(self, cfg: MptConfig) -> None:
        super().__init__()
        f, bias = int(cfg.expansion_ratio * cfg.d_model), not cfg.no_bias
        self.up_proj = nn.Linear(cfg.d_model, f, bias=bias)
        self.down_proj = nn.Linear(f, cfg.d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.gelu(self.up_proj(x)))


class MptBlock(nn.Module):
    def __init__(self, cfg: MptConfig) -> None:
        super().__init__()
        bias = not cfg.no_bias
        self.norm_1 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_epsilon, bias=bias)
        self.attn = MptAttention(cfg)
        self.norm_2 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_epsilon, bias=bias)
        self.ffn = MptMLP(cfg)

    def forward(self, x: Tensor, attn: AttnInputs, cache: KVCache | None, layer: int) -> Tensor:
        x = x + self.attn(self.norm_1(x), attn, cache, layer)
        return x + self.ffn(self.norm_2(x))


class _MptBody(nn.Module):
    def __init__(self, cfg: MptConfig) -> None:
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList([MptBlock(cfg) for _ in range(cfg.n_layers)])
        self.norm_f = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_epsilon, bias=not cfg.no_bias)


# MosaicGPT (OpenFlamingo-3B's LM) -> HF MPT names. Regexes on the full key.
_MOSAIC_RENAMES = [
    (re.compile(r"\.ln_1\."), ".norm_1."),
    (re.compile(r"\.ln_2\."), ".norm_2."),
    (re.compile(r"\.mlp\.mlp_up\."), ".ffn.up_proj."),
    (re.compile(r"\.mlp\.mlp_down\."), ".ffn.down_proj."),
    (re.compile(r"^transformer\.ln_f\."), "transformer.norm_f."),
]


@DECODERS.register("mpt")
class MptDecoder(Decoder):
    """HF ``MptForCausalLM`` layout: ``transformer.wte``, ``transformer.blocks``, ``transformer.norm_f``; head tied."""

    family = "mpt"
    model_types = ("mpt", "mosaic_gpt")

    def __init__(self, cfg: MptConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.hidden_size = cfg.d_model
        self.vocab_size = cfg.vocab_size
        self.transformer = _MptBody(cfg)

    @property
    def blocks(self) -> nn.ModuleList:  # type: ignore[override]
        # A property, not an attribute: a second registration would duplicate every key in state_dict().
        return self.transformer.blocks

    def embed(self, input_ids: Tensor, positions: Tensor | None = None) -> Tensor:
        return self.transformer.wte(input_ids)

    def head(self, x: Tensor) -> Tensor:
        logits = lm_logits(self.transformer.norm_f(x), self.transformer.wte.weight)
        if self.cfg.logit_scale is not None:
            logits = logits * self.cfg.logit_scale
        return logits

    def input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def output_embeddings(self) -> nn.Linear | None:
        return None

    def _set_input_embeddings(self, emb: nn.Embedding) -> None:
        self.transformer.wte = emb

    def _set_output_embeddings(self, head: nn.Linear) -> None:
        raise AssertionError("MPT's head is tied to its input embeddings")

    @classmethod
    def hf_key_map(cls, key: str) -> str:
        for pattern, repl in _MOSAIC_RENAMES:
            key = pattern.sub(repl, key)
        return key

    @classmethod
    def from_hf_config(cls, config: dict[str, Any]) -> MptDecoder:
        """Accepts HF/llm-foundry ``mpt`` configs (nested ``attn_config``) and flat ``mosaic_gpt`` ones."""
        if config.get("model_type") == "mosaic_gpt" or "attn_config" not in config:
            attn = {
                "alibi": config.get("alibi", False),
                "alibi_bias_max": config.get("alibi_bias_max", 8),
                "qk_ln": config.get("attn_qk_ln", False),
                "clip_qkv": config.get("attn_clip_qkv"),
                "softmax_scale": config.get("softmax_scale"),
                "prefix_lm": config.get("prefix_lm", False),
            }
            ratio = config.get("mlp_ratio", config.get("expansion_ratio", 4))
        else:
            attn = dict(config["attn_config"])
            ratio = config.get("expansion_ratio", 4)
        _check_supported(config, attn)
        scale = config.get("logit_scale")
        if scale == "inv_sqrt_d_model":
            scale = 1 / math.sqrt(config["d_model"])
        return cls(MptConfig(
            vocab_size=config["vocab_size"], d_model=config["d_model"], n_heads=config["n_heads"],
            n_layers=config["n_layers"], expansion_ratio=ratio, max_seq_len=config.get("max_seq_len", 2048),
            layer_norm_epsilon=config.get("layer_norm_epsilon", 1e-5), no_bias=config.get("no_bias", True),
            alibi_bias_max=attn.get("alibi_bias_max", 8), softmax_scale=attn.get("softmax_scale"),
            clip_qkv=attn.get("clip_qkv"), qk_ln=bool(attn.get("qk_ln")), logit_scale=scale,
        ))


def _check_supported(config: dict[str, Any], attn: dict[str, Any]) -> None:
    """Reject MPT options this decoder does not implement, naming the config field."""
    problems = []
    if not attn.get("alibi", False):
        problems.append("alibi=false (learned/rotary positions)")
    if attn.get("rope"):
        problems.append("attn_config.rope=true")
    if attn.get("prefix_lm"):
        problems.append("prefix_lm=true")
    if attn.get("attn_type", "multihead_attention") != "multihead_attention":
        problems.append(f"attn_type={attn['attn_type']!r}")
    ffn = config.get("ffn_config") or {}
    act = ffn.get("ffn_act_fn") or {"name": "gelu", "approximate": "none"}
    if ffn.get("ffn_type", "mptmlp") != "mptmlp" or act != {"name": "gelu", "approximate": "none"}:
        problems.append(f"ffn_config={ffn}")
    if config.get("norm_type", "low_precision_layernorm") not in ("layernorm", "low_precision_layernorm"):
        problems.append(f"norm_type={config['norm_type']!r}")
    if config.get("tie_word_embeddings") is False:
        problems.append("tie_word_embeddings=false")
    if problems:
        raise UserError(f"mpt decoder: unsupported config option(s): {', '.join(problems)}")
