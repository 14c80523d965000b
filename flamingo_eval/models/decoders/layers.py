"""Layers several decoder families share: RMSNorm, rotary positions, attention over (branched) caches, activations.

Each family module (``llama.py``, ``gpt_neox.py``, ``mpt.py``, ``opt.py``, IDEFICS's blocks) builds its blocks from
these; what only one family uses (ALiBi slopes, OPT's learned positions) stays in that family's file.
Shapes: B batch, T new tokens, S keys (cached + new), H heads, Hkv key/value heads, Dh head dim, D width.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flamingo_eval.models.cache import BranchKV, attend_branched


class RMSNorm(nn.Module):
    """Root-mean-square norm computed in fp32, scaled by a learned weight (LLaMA, IDEFICS; HF ``LlamaRMSNorm``)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


def rotary_tables(positions: Tensor, theta: float, rot_dim: int, dtype: torch.dtype,
                  memo: dict | None = None) -> tuple[Tensor, Tensor]:
    """cos, sin (B, 1, T, rot_dim) for ``positions`` (B, T); memoised per forward across layers."""
    key = ("rotary", theta, rot_dim, dtype)
    if memo is not None and key in memo:
        return memo[key]
    inv_freq = 1.0 / (theta ** (torch.arange(0, rot_dim, 2, device=positions.device, dtype=torch.float32) / rot_dim))
    freqs = positions[:, None, :, None].float() * inv_freq  # (B, 1, T, rot/2)
    emb = torch.cat([freqs, freqs], dim=-1)  # (B, 1, T, rot)
    tables = (emb.cos().to(dtype), emb.sin().to(dtype))
    if memo is not None:
        memo[key] = tables
    return tables


def rotary(x: Tensor, positions: Tensor, theta: float, rot_dim: int, memo: dict | None = None) -> Tensor:
    """Rotate the first ``rot_dim`` features of x (B, H, T, Dh) by ``positions`` (B, T), HF half-split layout."""
    cos, sin = rotary_tables(positions, theta, rot_dim, x.dtype, memo)
    xr, xpass = x[..., :rot_dim], x[..., rot_dim:]
    x1, x2 = xr[..., : rot_dim // 2], xr[..., rot_dim // 2 :]
    rotated = torch.cat([-x2, x1], dim=-1)
    return torch.cat([xr * cos + rotated * sin, xpass], dim=-1)


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, bias: Tensor | None = None,
           causal_only: bool = False) -> Tensor:
    """SDPA over (B, H, T, Dh) queries and (B, Hkv, S, Dh) keys/values; GQA by repeating kv heads.

    Keys from a ``BranchKVCache`` carry shared prefix keys: attention then spans them without copies.
    ``causal_only`` (``AttnInputs.causal_only``) says ``mask`` is plain causal: without a bias the mask is
    then dropped (``is_causal`` for a prefill, nothing for one new token), so CUDA may run flash attention;
    with padding or a bias (ALiBi) the memory-efficient kernel takes the explicit mask.
    """
    if isinstance(k, BranchKV) and isinstance(v, BranchKV):
        return attend_branched(q, k, v, mask, bias)
    if k.shape[1] != q.shape[1]:
        rep = q.shape[1] // k.shape[1]
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
    if bias is None:
        if causal_only and q.shape[2] == 1:
            return F.scaled_dot_product_attention(q, k, v)
        if causal_only and q.shape[2] == k.shape[2]:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.masked_fill(~mask, float("-inf")).to(q.dtype))


def gelu_tanh(x: Tensor) -> Tensor:
    """GELU, tanh approximation (HF ``gelu_new`` / ``gelu_fast`` / ``gelu_pytorch_tanh``)."""
    return F.gelu(x, approximate="tanh")


# HF ``hidden_act`` names -> functions (gelu_new / gelu_fast are the tanh approximation).
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu, "gelu_new": gelu_tanh, "gelu_fast": gelu_tanh, "gelu_pytorch_tanh": gelu_tanh,
    "relu": F.relu, "silu": F.silu,
}
