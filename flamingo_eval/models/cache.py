"""Key/value caches with an explicit lifetime: one object per prompt batch, owned by the caller.

Shapes: B batch, R rows of a branch, P rows of a shared prefix, H heads, Hkv key/value heads, S cached
length, T new tokens, Dh head dim.

``KVCache`` is the plain per-row cache. ``BranchKVCache`` holds rows that *extend* read-only shared
caches without copying them (beams of one prompt, rank candidates of one context, prompts that share a
demo prefix): its ``update`` returns the rows' own keys as a ``BranchKV`` tensor that carries the shared
prefix keys, and ``attend_branched`` computes attention over [shared prefix keys, own keys] with one
grouped matrix product per shared level, so a prefix of S keys serves any number of rows.
"""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    """Per-layer self-attention keys/values for a batch of sequences.

    Layers append new keys/values in ``update``; ``select`` reorders or expands the batch
    (beam search). Storage grows by concatenation, which is cheap for the few decode steps of
    evaluation and keeps the object trivially correct.
    """

    def __init__(self, num_layers: int) -> None:
        self.k: list[Tensor | None] = [None] * num_layers
        self.v: list[Tensor | None] = [None] * num_layers

    @property
    def length(self) -> int:
        """Number of cached positions (0 when empty)."""
        k = self.k[0]
        return 0 if k is None else k.shape[2]

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``k, v`` of shape (B, H, T, Dh) for ``layer`` and return the full (B, H, S+T, Dh)."""
        old_k, old_v = self.k[layer], self.v[layer]
        if old_k is not None and old_v is not None:
            k = torch.cat([old_k, k], dim=2)
            v = torch.cat([old_v, v], dim=2)
        self.k[layer], self.v[layer] = k, v
        return k, v


    def view(self, row: int, start: int = 0) -> KVCache:
        """Row ``row`` from position ``start`` on, as views (no copy): (1, H, S - start, Dh) per layer."""
        out = KVCache(len(self.k))
        for i, (k, v) in enumerate(zip(self.k, self.v)):
            if k is not None and v is not None:
                out.k[i], out.v[i] = k[row : row + 1, :, start:], v[row : row + 1, :, start:]
        return out

    def select(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (reorders, drops or repeats rows; used for beams).

        Layers of a model split over devices keep their K/V on their own device; ``index`` follows them.
        """
        moved = {index.device: index}
        for i, (k, v) in enumerate(zip(self.k, self.v)):
            if k is not None and v is not None:
                idx = moved.get(k.device)
                if idx is None:
                    idx = moved[k.device] = index.to(k.device)
                self.k[i] = k.index_select(0, idx)
                self.v[i] = v.index_select(0, idx)


class BranchKV(Tensor):
    """A branch's own keys (or values) (R, Hkv, T, Dh) plus the shared levels they extend.

    ``shared[j]`` is (P_j, Hkv, S_j, Dh) with P_j dividing R: row r continues row ``r // (R // P_j)``.
    Plain torch ops on this tensor return plain tensors (no subclass propagation).
    """

    __torch_function__ = torch._C._disabled_torch_function_impl  # type: ignore[assignment]
    shared: list[Tensor]

    @staticmethod
    def wrap(own: Tensor, shared: list[Tensor]) -> BranchKV:
        out = own.as_subclass(BranchKV)
        out.shared = shared
        return out


class BranchKVCache(KVCache):
    """Rows that extend shared, read-only caches (outermost first) without copying them.

    ``shared[j]`` has P_j rows, P_0 | P_1 | ... | rows: row r of this cache continues row
    ``r // (rows // P_j)`` of ``shared[j]`` (rows of one group are contiguous). ``select`` may only
    reorder rows within their group, which is what beam search does (beams stay with their prompt).
    Its own keys grow by concatenation; the shared caches are never written.
    """

    def __init__(self, shared: list[KVCache], rows: int) -> None:
        super().__init__(len(shared[0].k))
        self.shared = [c for c in shared if c.length > 0]
        self.rows = rows
        for c in self.shared:
            p = c.k[0].shape[0]  # type: ignore[union-attr]
            assert rows % p == 0, f"{rows} branch rows cannot extend {p} shared rows"

    @property
    def length(self) -> int:
        return sum(c.length for c in self.shared) + super().length

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        k, v = super().update(layer, k, v)
        sk = [c.k[layer] for c in self.shared]
        sv = [c.v[layer] for c in self.shared]
        return BranchKV.wrap(k, sk), BranchKV.wrap(v, sv)  # type: ignore[arg-type]



def attend_branched(q: Tensor, k: BranchKV, v: BranchKV, mask: Tensor, bias: Tensor | None) -> Tensor:
    """Attention of q (R, H, T, Dh) over [shared levels..., own keys]; ``mask``/``bias`` span all S keys.

    Scores against a shared level of P rows are one matrix product per (P row, kv head): the R // P
    query rows of a group are folded into the query length, so the shared keys are read once.
    """
    r, h, t, dh = q.shape
    scale = dh**-0.5
    scores, values = [], []
    for sk, sv in zip(k.shared, v.shared):
        scores.append(_grouped(q, sk, lambda a, b: a @ b.transpose(-1, -2)) * scale)  # (R, H, T, S_j)
        values.append(sv)
    own_k, own_v = k.as_subclass(Tensor), v.as_subclass(Tensor)
    scores.append(_grouped(q, own_k, lambda a, b: a @ b.transpose(-1, -2)) * scale)  # (R, H, T, S_own)
    values.append(own_v)
    s = torch.cat(scores, dim=-1).float()  # (R, H, T, S)
    if bias is not None:
        s = s + bias.float()
    s = s.masked_fill(~mask, float("-inf"))
    p = s.softmax(-1).to(q.dtype)
    out = torch.zeros_like(q)
    start = 0
    for val in values:
        width = val.shape[2]
        out = out + _grouped(p[..., start : start + width], val, lambda a, b: a @ b)
        start += width
    return out


def _grouped(x: Tensor, kv: Tensor, op) -> Tensor:  # type: ignore[no-untyped-def]
    """Apply ``op(x_group, kv_row)`` with x (R, H, T, L) and kv (P, Hkv, S, Dh), P | R, Hkv | H.

    Rows ``g*G .. g*G+G-1`` of x use kv row g; query heads ``j*rep .. j*rep+rep-1`` use kv head j.
    Folding both into the matrix rows gives one (P, Hkv, rep*G*T, L) product: no copy of kv.
    """
    r, h, t, length = x.shape
    p, hkv = kv.shape[0], kv.shape[1]
    g, rep = r // p, h // hkv
    xf = x.reshape(p, g, hkv, rep, t, length).permute(0, 2, 3, 1, 4, 5).reshape(p, hkv, rep * g * t, length)
    y = op(xf, kv)  # (P, Hkv, rep*G*T, W)
    w = y.shape[-1]
    return y.reshape(p, hkv, rep, g, t, w).permute(0, 3, 1, 2, 4, 5).reshape(r, h, t, w)
