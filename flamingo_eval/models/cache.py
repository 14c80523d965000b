"""Key/value cache with an explicit lifetime: one object per prompt batch, owned by the caller.

Shapes: B batch, H heads, S cached length, Dh head dim.
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

    def selected(self, index: Tensor) -> KVCache:
        """A new cache holding rows ``index`` of this one (this cache is left untouched)."""
        out = KVCache(len(self.k))
        for i, (k, v) in enumerate(zip(self.k, self.v)):
            if k is not None and v is not None:
                out.k[i], out.v[i] = k.index_select(0, index), v.index_select(0, index)
        return out

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v if t is not None)

    def select(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (reorders, drops or repeats rows; used for beams)."""
        for i, (k, v) in enumerate(zip(self.k, self.v)):
            if k is not None and v is not None:
                self.k[i] = k.index_select(0, index)
                self.v[i] = v.index_select(0, index)
