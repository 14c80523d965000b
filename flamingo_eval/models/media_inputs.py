"""The engine's media side: media items -> vision latents (cached) -> a prompt batch's ``MediaState``.

A mixin of ``FlamingoEvalModel`` (and so of the reference path, which subclasses it): both paths encode
through :meth:`MediaInputs._encode_pixels`, in vision forwards of exactly ``vision_batch_size`` items, so an
item's latents are the same bits whatever it is encoded with. The engine keeps them in the latent cache
(``models/latent_cache.py``), keyed by the model fingerprint, dtype, device, vision batch size and the media
key (an image's content hash; a video's content hash + segment + frame sampling + decoder).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from flamingo_eval.models.flamingo import Flamingo, MediaState
from flamingo_eval.models.latent_cache import LatentCache
from flamingo_eval.models.vision import encode_fixed_batches
from flamingo_eval.timing import PhaseTimer
from flamingo_eval.types import InterleavedPrompt, Media, VideoRef, media_path
from flamingo_eval.video.media import MediaLoader, media_key


class MediaInputs:
    """Loading, encoding and caching media for a prompt batch; the attributes are set by the model class."""

    model: Flamingo
    preprocess: Callable[[Any], Tensor]
    _fingerprint: str
    device: torch.device
    latent_device: torch.device
    dtype: torch.dtype
    vision_batch_size: int
    latents: LatentCache
    timer: PhaseTimer
    media: MediaLoader
    _checked: set[Media]

    def _latent_key(self, digest: str) -> str:
        # The chunk size is part of the key: latents of another chunk shape may differ in the last bits.
        return f"{self._fingerprint}@{self.dtype}@{self.device.type}@vb{self.vision_batch_size}/{digest}"

    def _encode_pixels(self, pixels: Tensor) -> Tensor:
        """(I, F, 3, H, W) -> (I, N, Dv) latents, in forwards of exactly ``vision_batch_size`` media items.

        Engine and reference path both encode through here, so an item's latents are the same bits
        whatever its neighbours, its position or the number of items encoded with it (for a given F).
        """
        return encode_fixed_batches(self.model.encode_media, pixels.to(self.model.vision_device, self.dtype),
                                    self.vision_batch_size)

    def _media_latents(self, items: Sequence[Media]) -> list[Tensor]:
        """Latents (N, Dv) per media item, encoded once per distinct item (``media_key``) and cached.

        Items are encoded ``vision_batch_size`` at a time, grouped by frame count
        (a video's F frames are one item of the perceiver); images are items of one frame.
        """
        digests = [media_key(m) for m in items]
        keys = [self._latent_key(d) for d in digests]
        todo: dict[str, tuple[str, Media]] = {}
        for k, d, m in zip(keys, digests, items):
            if k not in todo and self.latents.get(k) is None:
                todo[k] = (d, m)
        groups: dict[int, list[tuple[str, Tensor]]] = {}
        with self.timer.phase("vision"):
            for k, (d, m) in todo.items():
                t0 = time.perf_counter()
                pix = self._pixels(m, d)  # (F, 3, H, W)
                self.latents.encode_seconds += time.perf_counter() - t0
                group = groups.setdefault(pix.shape[0], [])
                group.append((k, pix))
                if len(group) >= self.vision_batch_size:
                    self._encode_group(group)
                    group.clear()
            for group in groups.values():
                if group:
                    self._encode_group(group)
        got = []
        for k in keys:
            t = self.latents.get(k)
            assert t is not None, "latent cache budget smaller than one batch of images"
            got.append(t.to(self.latent_device, self.dtype))  # already there (disk hits are loaded there)
        return got

    def _image_latents(self, paths: Sequence[Media]) -> list[Tensor]:
        """Alias of :meth:`_media_latents` (images are one-frame media)."""
        return self._media_latents(paths)

    def _pixels(self, item: Media, digest: str | None = None) -> Tensor:
        """(F, 3, H, W) preprocessed frames of a media item (F = 1 for an image)."""
        return torch.stack([self.preprocess(f) for f in self.media.load(item, digest)])

    def _to_vision(self, pixels: Tensor) -> Tensor:
        """Host pixels -> the vision device in the model dtype; on CUDA through pinned host memory, so the
        copy does not block the host."""
        vision = self.model.vision_device
        if vision.type == "cuda":
            pixels = pixels.pin_memory().to(vision, non_blocking=True)
        return pixels.to(vision, self.dtype)

    def _encode_group(self, group: list[tuple[str, Tensor]]) -> None:
        """Encode items of equal frame count in one vision batch and cache their latents."""
        t0 = time.perf_counter()
        pixels = self._to_vision(torch.stack([p for _, p in group]))  # (I, F, 3, H, W)
        lat = self._encode_pixels(pixels)  # (I, N, Dv)
        self.latents.encode_seconds += time.perf_counter() - t0
        self.latents.encodes += pixels.shape[0] * pixels.shape[1]
        for (k, _), t in zip(group, lat):
            self.latents.put(k, t.clone())

    def media_stats(self) -> dict[str, Any]:
        """Video decoding counters (clips decoded, frames, seconds, clips shorter than requested); {} without video."""
        return self.media.stats()

    def _media_state(self, prompts: Sequence[InterleavedPrompt]) -> MediaState:
        uniq = sorted({m for p in prompts for m in p.media}, key=_media_order)
        n_lat, dim = self.model.latent_shape()
        if not self.model.conditions_on_media():
            # Every gate is exactly zero: latents cannot change any output; only check each item loads (once).
            for item in uniq:
                if item not in self._checked:
                    self.media.load(item)
                    self._checked.add(item)
            empty = torch.zeros(len(prompts), 0, n_lat, dim, device=self.latent_device, dtype=self.dtype)
            return self.model.media_state(empty, len(prompts))
        m = max((len(p.media) for p in prompts), default=0)
        lat = torch.zeros(len(prompts), m, n_lat, dim, device=self.latent_device, dtype=self.dtype)  # (B, M, N, Dv)
        by_item = dict(zip(uniq, self._media_latents(uniq))) if uniq else {}
        for b, p in enumerate(prompts):
            for j, item in enumerate(p.media):
                lat[b, j] = by_item[item]
        with self.timer.phase("prefill"):  # the per-layer media K/V projection is prompt work
            return self.model.media_state(lat, len(prompts))



def _media_order(item: Media) -> tuple[str, str]:
    """Sort key of media items: by file path (images keep their old order), then a video's segment/sampling."""
    return (media_path(item), item.describe() if isinstance(item, VideoRef) else "")


