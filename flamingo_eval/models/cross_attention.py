"""Masked cross-attention: text queries attend to the latents of their own (most recent) image.

The module (``MaskedCrossAttention``, OpenFlamingo's parameter names) and its two kernels: the engine's
per-segment :func:`segment_attention` (O(T*N) per head, unmasked SDPA calls) and the reference path's
:func:`masked_cross_attention_reference` (OpenFlamingo's masked O(T*M*N) formulation), equal to <= 1e-5
(tests/numerics/test_flamingo.py). Shape legend as in ``models/flamingo.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _heads(x: Tensor, h: int) -> Tensor:
    """(..., L, H*Dh) -> (..., H, L, Dh)."""
    *lead, length, width = x.shape
    return x.view(*lead, length, h, width // h).transpose(-3, -2)


class MaskedCrossAttention(nn.Module):
    """Text queries, image-latent keys/values; K/V are projected once per prompt (``project_media``)."""

    def __init__(self, dim: int, dim_visual: int, dim_head: int, heads: int) -> None:
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim_visual, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def project_media(self, latents: Tensor) -> tuple[Tensor, Tensor]:
        """(B, M, N, Dv) -> k, v each (B, M, H, N, Dh)."""
        k, v = self.to_kv(latents).chunk(2, dim=-1)
        return _heads(k, self.heads), _heads(v, self.heads)

    def forward(self, x: Tensor, k: Tensor, v: Tensor, img_idx: Tensor, masked: bool = False,
                memo: dict | None = None) -> Tensor:
        """x (B, T, D); k, v (B, M, H, N, Dh); img_idx (B, T) in 0..M (0 = no image yet) -> (B, T, D).

        ``masked`` selects OpenFlamingo's O(T*M*N) masked formulation (the reference path); ``memo`` is the
        forward's per-device memo (``AttnInputs.memo``), where the segment layout is computed once for all layers.
        """
        q = _heads(self.to_q(self.norm(x)), self.heads)  # (B, H, T, Dh)
        if masked:
            out = masked_cross_attention_reference(q, k, v, img_idx)
        else:
            out = segment_attention(q, k, v, img_idx, memo)  # (B, H, T, Dh)
        return self.to_out(out.transpose(1, 2).flatten(2))


def _segment_layout(img_idx: Tensor, m: int, memo: dict | None) -> tuple[int, int, Tensor, Tensor, int]:
    """(lo, hi, order (B, M, L), valid (B, M, L), L) of ``img_idx`` for M images, memoised per forward.

    The image indices are the same at every cross-attention layer of a forward, so their host syncs
    (min, max, longest segment) and the sort happen once, not once per layer.
    """
    key = ("segments", m)
    if memo is not None and key in memo:
        return memo[key]  # type: ignore[no-any-return]
    lo, hi = (int(x) for x in torch.stack([img_idx.min(), img_idx.max()]).tolist())
    order = valid = torch.empty(0)
    seg_len = 0
    if lo != hi:
        # Segment layout: for row b and image m (1..M), the token positions with img_idx == m, padded to L.
        onehot = img_idx[:, None, :] == torch.arange(1, m + 1, device=img_idx.device)[None, :, None]  # (B, M, T)
        counts = onehot.sum(-1)  # (B, M)
        seg_len = int(counts.max())
        # Stable sort puts each segment's tokens first (in order); positions beyond counts are padding.
        order = torch.argsort((~onehot).to(torch.int8), dim=-1, stable=True)[..., :seg_len]  # (B, M, L)
        valid = torch.arange(seg_len, device=img_idx.device)[None, None] < counts[..., None]  # (B, M, L)
    out = (lo, hi, order, valid, seg_len)
    if memo is not None:
        memo[key] = out
    return out


def segment_attention(q: Tensor, k: Tensor, v: Tensor, img_idx: Tensor, memo: dict | None = None) -> Tensor:
    """Each query attends to the N latents of its own image only; O(T*N) per head.

    q (B, H, T, Dh), k/v (B, M, H, N, Dh), img_idx (B, T) with 0 meaning "no image" (zero output).
    k/v may hold fewer rows Bk (Bk | B): query rows r*G..r*G+G-1 (G = B // Bk) then share media row r.
    Tokens are grouped by image: when all queries share one image (decoding, candidate scoring) this
    is a single batched attention; otherwise queries are gathered into per-image segments. Every SDPA
    call is 4-D and unmasked, so CUDA can run it with flash attention.
    """
    bsz, heads, t, dh = q.shape
    if k.shape[1] == 0:
        return torch.zeros_like(q)
    lo, hi, order, valid, seg_len = _segment_layout(img_idx, k.shape[1], memo)
    if lo == hi:  # one image for every query of every row
        if lo == 0:
            return torch.zeros_like(q)
        kb = k.shape[0]
        if kb != bsz:  # rows r*G..r*G+G-1 share media row r (beams, rank candidates): fold, no copy
            qf = q.reshape(kb, bsz // kb, heads, t, dh).transpose(1, 2).reshape(kb, heads, -1, dh)
            out = F.scaled_dot_product_attention(qf, k[:, lo - 1], v[:, lo - 1])  # (Bk, H, G*T, Dh)
            return out.reshape(kb, heads, bsz // kb, t, dh).transpose(1, 2).reshape(bsz, heads, t, dh)
        return F.scaled_dot_product_attention(q, k[:, lo - 1], v[:, lo - 1])
    if k.shape[0] != bsz:  # grouped media rows with several images in flight (rare): expand
        k = k.repeat_interleave(bsz // k.shape[0], 0)
        v = v.repeat_interleave(bsz // v.shape[0], 0)
    if seg_len == 0:
        return torch.zeros_like(q)
    m, n = k.shape[1], k.shape[3]
    gather = order[:, None, :, :, None].expand(bsz, heads, m, seg_len, dh).reshape(bsz, heads, m * seg_len, dh)
    q_seg = q.gather(2, gather).view(bsz, heads, m, seg_len, dh).transpose(1, 2)  # (B, M, H, L, Dh)
    out_seg = F.scaled_dot_product_attention(  # 4-D: (B*M, H, L, Dh) against (B*M, H, N, Dh)
        q_seg.reshape(bsz * m, heads, seg_len, dh), k.reshape(bsz * m, heads, n, dh), v.reshape(bsz * m, heads, n, dh),
    ).view(bsz, m, heads, seg_len, dh)
    out_seg = out_seg * valid[:, :, None, :, None]
    out = torch.zeros_like(q)
    out.scatter_add_(2, gather, out_seg.transpose(1, 2).reshape(bsz, heads, m * seg_len, dh))
    return out


def masked_cross_attention_reference(q: Tensor, k: Tensor, v: Tensor, img_idx: Tensor) -> Tensor:
    """OpenFlamingo's formulation: attend over all images' latents with a mask (O(T*M*N)). For tests."""
    bsz, heads, t, dh = q.shape
    m, n = k.shape[1], k.shape[3]
    if m == 0:
        return torch.zeros_like(q)
    k_all = k.permute(0, 2, 1, 3, 4).reshape(bsz, heads, m * n, dh)
    v_all = v.permute(0, 2, 1, 3, 4).reshape(bsz, heads, m * n, dh)
    sim = (q @ k_all.transpose(-1, -2)) * dh**-0.5  # (B, H, T, M*N)
    media_time = torch.arange(1, m + 1, device=q.device).repeat_interleave(n)  # (M*N,)
    mask = img_idx[:, None, :, None] == media_time[None, None, None, :]
    sim = sim.masked_fill(~mask, torch.finfo(sim.dtype).min)
    attn = (sim - sim.amax(-1, keepdim=True)).softmax(-1)
    attn = attn.masked_fill((img_idx == 0)[:, None, :, None], 0.0)
    return attn @ v_all
