"""``LatentCache``: per-image vision latents computed once per run, in memory and optionally on disk."""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["LatentCache"]


class LatentCache:
    """Memory LRU of per-image latents (N, Dv), bounded by ``max_bytes``, optionally backed by disk.

    Keys are ``"<model fingerprint>/<image content hash>"`` so latents of other weights never match. The
    disk cache (``directory``) stores one ``.pt`` file per key, written atomically.
    """

    def __init__(self, max_bytes: int, directory: str | os.PathLike[str] | None = None,
                 device: torch.device | str = "cpu") -> None:
        self.max_bytes = max_bytes
        self.directory = Path(directory) if directory else None
        self.device = torch.device(device)
        """Where latents are kept (the perceiver's device): disk hits are loaded straight onto it, once."""
        self._items: OrderedDict[str, Tensor] = OrderedDict()
        self._bytes = 0
        self.encodes = 0
        self.hits = 0
        self.disk_hits = 0
        self.disk_writes = 0
        self.evictions = 0
        self.encode_seconds = 0.0

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        scope, digest = key.split("/", 1)  # scope = weights fingerprint @ dtype @ device type
        return self.directory / hashlib.sha256(scope.encode()).hexdigest()[:32] / f"{digest}.pt"

    def get(self, key: str) -> Tensor | None:
        t = self._items.get(key)
        if t is not None:
            self._items.move_to_end(key)
            self.hits += 1
            return t
        if self.directory is not None:
            path = self._path(key)
            if path.is_file():
                t = torch.load(path, map_location=self.device, weights_only=True)
                self.disk_hits += 1
                self._remember(key, t)
        return t

    def put(self, key: str, value: Tensor) -> None:
        self._remember(key, value)
        if self.directory is not None:
            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save(value.detach().cpu().clone(), tmp)
            os.replace(tmp, path)
            self.disk_writes += 1

    def _remember(self, key: str, value: Tensor) -> None:
        if key in self._items:
            return
        self._items[key] = value
        self._bytes += value.numel() * value.element_size()
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.numel() * old.element_size()
            self.evictions += 1

    def stats(self) -> dict[str, float]:
        """Counters for run records and the benchmark (encodes == distinct images when nothing was evicted)."""
        return {"encodes": self.encodes, "hits": self.hits, "disk_hits": self.disk_hits,
                "disk_writes": self.disk_writes, "evictions": self.evictions, "items": len(self._items),
                "bytes": self._bytes, "encode_seconds": round(self.encode_seconds, 3)}
