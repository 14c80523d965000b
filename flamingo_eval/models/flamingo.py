"""Flamingo: a frozen LM conditioned on images through gated cross-attention.

Alayrac et al. 2022, "Flamingo: a Visual Language Model for Few-Shot Learning" (arXiv 2204.14198);
Awadalla et al. 2023, "OpenFlamingo" (arXiv 2308.01390). Parameter names follow OpenFlamingo 2.0.1 so
its ``checkpoint.pt`` maps onto this module one to one (see models/checkpoints.py).

Shape legend: B batch, T text tokens, S keys (cached + new), I distinct media items, M media per row,
F frames per media item (1 for an image), V vision tokens per frame, N latents, Dv vision width, D LM width,
H heads, Dh head dim.

A video is one media item: its F frames go through the vision encoder as a batch, get the perceiver's
learned per-frame embedding when it has one (``frame_embs``, OpenFlamingo's ``max_num_frames``), and the
perceiver resamples all F*V tokens to N latents, as OpenFlamingo's ``PerceiverResampler`` does.

Cross-attention rule ("only attend to the immediately preceding image"): a text token sees the latents of
the most recent ``<image>`` at or before it; text before the first image gets no cross-attention output.
Tokens generated after the prompt see the prompt's last image. The attention itself and its two kernels
(engine, reference) are in ``models/cross_attention.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flamingo_eval.errors import UserError
from flamingo_eval.models.cache import KVCache
from flamingo_eval.models.cross_attention import MaskedCrossAttention, _heads
from flamingo_eval.models.decoders.base import AttnInputs, Decoder, build_attn_inputs


@dataclass
class FlamingoConfig:
    cross_attn_every_n_layers: int = 1
    cross_attn_layers: list[int] | None = None
    """Explicit decoder layers that get a block before them (overrides ``cross_attn_every_n_layers``): e.g.
    only the top layers, so a training backward pass stops there (the trained ``mini`` bridge)."""
    perceiver_depth: int = 6
    perceiver_heads: int = 8
    perceiver_dim_head: int = 64
    num_latents: int = 64
    perceiver_ff_mult: float = 4
    xattn_heads: int = 8
    xattn_dim_head: int = 64
    xattn_ff_mult: float = 4
    max_num_frames: int | None = None
    """Rows of the perceiver's learned per-frame embedding ``frame_embs``; None = no such embedding (the
    released OpenFlamingo models). A checkpoint that carries ``perceiver.frame_embs`` sets it on load."""

    def xattn_layers(self, num_layers: int) -> list[int]:
        """Indices of the decoder layers preceded by a gated cross-attention block."""
        if self.cross_attn_layers is None:
            n = self.cross_attn_every_n_layers
            return [i for i in range(num_layers) if (i + 1) % n == 0]
        bad = [i for i in self.cross_attn_layers if not 0 <= i < num_layers]
        if bad:
            raise UserError(f"flamingo.cross_attn_layers {bad} out of range: the LM has layers 0..{num_layers - 1}")
        return sorted(set(self.cross_attn_layers))


def feed_forward(dim: int, mult: float) -> nn.Sequential:
    """Pre-LayerNorm GELU MLP; indices 0/1/3 match OpenFlamingo's keys. ``mult`` may be fractional."""
    inner = int(dim * mult)
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, inner, bias=False), nn.GELU(),
                         nn.Linear(inner, dim, bias=False))


class PerceiverAttention(nn.Module):
    def __init__(self, dim: int, dim_head: int, heads: int) -> None:
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: Tensor, latents: Tensor) -> Tensor:
        """x (I, V, Dv) media tokens, latents (I, N, Dv) -> (I, N, Dv)."""
        x, latents = self.norm_media(x), self.norm_latents(latents)
        q = _heads(self.to_q(latents), self.heads)  # (I, H, N, Dh)
        k, v = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(q, _heads(k, self.heads), _heads(v, self.heads))  # (I, H, N, Dh)
        return self.to_out(out.transpose(1, 2).flatten(2))


class PerceiverResampler(nn.Module):
    """Maps the F*V vision tokens of each media item to N learned latents (Flamingo section 2.1)."""

    def __init__(self, dim: int, cfg: FlamingoConfig) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.randn(cfg.num_latents, dim))
        self.frame_embs: nn.Parameter | None = None
        if cfg.max_num_frames is not None:
            self.add_frame_embs(cfg.max_num_frames)
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(dim, cfg.perceiver_dim_head, cfg.perceiver_heads),
                           feed_forward(dim, cfg.perceiver_ff_mult)])
            for _ in range(cfg.perceiver_depth)
        )
        self.norm = nn.LayerNorm(dim)

    def add_frame_embs(self, max_num_frames: int) -> None:
        """Give the resampler a learned per-frame embedding (max_num_frames, Dv) (a checkpoint fills it)."""
        dim = self.latents.shape[1]
        self.frame_embs = nn.Parameter(torch.randn(max_num_frames, dim, device=self.latents.device,
                                                   dtype=self.latents.dtype))

    def forward(self, x: Tensor) -> Tensor:
        """(I, F, V, Dv) frames of each item, or (I, V, Dv) for single images (F = 1) -> (I, N, Dv).

        With ``frame_embs``, frame f gets ``frame_embs[f]`` added (images too: they are frame 0).
        """
        if x.dim() == 3:
            x = x[:, None]  # (I, 1, V, Dv)
        frames = x.shape[1]
        if self.frame_embs is not None:
            if frames > self.frame_embs.shape[0]:
                raise UserError(f"a video of {frames} frames, but the perceiver has frame embeddings "
                                f"(perceiver.frame_embs) for at most {self.frame_embs.shape[0]}; sample fewer "
                                f"frames (benchmarks.frames.count={self.frame_embs.shape[0]})")
            x = x + self.frame_embs[:frames, None]  # (I, F, V, Dv) + (F, 1, Dv)
        x = x.flatten(1, 2)  # (I, F*V, Dv)
        latents = self.latents[None].expand(x.shape[0], -1, -1)
        for layer in self.layers:
            attn, ff = layer[0], layer[1]  # type: ignore[index]
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm(latents)


class GatedCrossAttentionBlock(nn.Module):
    """x = x + tanh(attn_gate) * xattn(x); x = x + tanh(ff_gate) * ff(x)  (gates start at 0)."""

    def __init__(self, dim: int, dim_visual: int, cfg: FlamingoConfig) -> None:
        super().__init__()
        self.attn = MaskedCrossAttention(dim, dim_visual, cfg.xattn_dim_head, cfg.xattn_heads)
        self.attn_gate = nn.Parameter(torch.tensor([0.0]))
        self.ff = feed_forward(dim, cfg.xattn_ff_mult)
        self.ff_gate = nn.Parameter(torch.tensor([0.0]))

    def is_identity(self) -> bool:
        """Both gates exactly zero: the block adds exactly 0 and can be skipped."""
        return bool(self.attn_gate.item() == 0.0 and self.ff_gate.item() == 0.0)

    def project_media(self, latents: Tensor) -> tuple[Tensor, Tensor]:
        """(B, M, N, Dv) latents -> this block's media k, v (B, M, H, N, Dh)."""
        return self.attn.project_media(latents)

    def forward(self, x: Tensor, k: Tensor, v: Tensor, img_idx: Tensor, masked: bool = False,
                memo: dict | None = None) -> Tensor:
        x = x + self.attn(x, k, v, img_idx, masked, memo) * self.attn_gate.tanh()
        return x + self.ff(x) * self.ff_gate.tanh()


@dataclass
class MediaState:
    """Per-prompt-batch media conditioning with an explicit lifetime (one per generate/rank call).

    ``kv[layer]`` holds that layer's projected image latents (B, M, H, N, Dh); ``images_seen`` (B,)
    counts ``<image>`` tokens consumed so far per row, so later tokens know their image index.
    """

    kv: dict[int, tuple[Tensor, Tensor]]
    images_seen: Tensor
    latents: Tensor | None = None
    no_image: Tensor | None = None
    """(B,) bool, for models whose text stops seeing images after an end-of-document token (IDEFICS): True
    where the row's latest token sees no image although ``images_seen > 0``. None: never the case."""
    """Reference path only: (B, M, N, Dv) latents whose K/V every forward re-projects (OpenFlamingo's loop),
    attended with the masked O(T*M*N) kernel. None in the engine, which projects once (``kv``)."""

    def last_image(self) -> MediaState:
        """Only each row's last image (what tokens after the prompt see): kv (B, 1, H, N, Dh)."""
        if any(k.shape[1] == 0 for k, _ in self.kv.values()):  # a batch without images: nothing to keep
            return MediaState(kv=self.kv, images_seen=torch.zeros_like(self.images_seen))
        last = (self.images_seen - 1).clamp(min=0)  # (B,)
        rows = torch.arange(last.shape[0], device=last.device)
        index: dict[torch.device, tuple[Tensor, Tensor]] = {}  # per device: K/V live on their layer's device
        kv = {}
        for i, (k, v) in self.kv.items():
            if k.device not in index:
                index[k.device] = (rows.to(k.device), last.to(k.device))
            r, j = index[k.device]
            kv[i] = (k[r, j][:, None], v[r, j][:, None])
        sees = self.images_seen > 0 if self.no_image is None else (self.images_seen > 0) & ~self.no_image
        return MediaState(kv=kv, images_seen=sees.long())

    def branched(self, group: int) -> MediaState:
        """Each row repeated ``group`` times for decoding (beams); K/V stay shared per group, not copied.

        Beams only reorder within their group, whose media are equal, so the state is never reordered.
        """
        return MediaState(kv=self.kv, images_seen=self.images_seen.repeat_interleave(group))


@dataclass(frozen=True)
class Placement:
    """Stage (an index into ``devices``) of every placement unit of a model split over devices (planned and
    applied by ``models/placement.py``; :meth:`Flamingo.forward` follows it).

    ``layers[i]`` is the stage of decoder layer i and its cross-attention block. Stages are positions, not
    devices, so two stages may share a device (tests model a two-stage split as ``["cpu", "cpu"]``).
    """

    devices: tuple[torch.device, ...]
    vision: int
    perceiver: int
    io: int
    layers: tuple[int, ...]

    def describe(self) -> str:
        """E.g. ``cuda:0: vision, perceiver, io, layers 0-11; cuda:1: layers 12-23``."""
        parts: dict[int, list[str]] = {}
        for name, slot in (("vision", self.vision), ("perceiver", self.perceiver), ("io", self.io)):
            parts.setdefault(slot, []).append(name)
        start = 0
        for i in range(1, len(self.layers) + 1):
            if i == len(self.layers) or self.layers[i] != self.layers[start]:
                span = f"layer {start}" if i - 1 == start else f"layers {start}-{i - 1}"
                parts.setdefault(self.layers[start], []).append(span)
                start = i
        return "; ".join(f"{self.devices[slot]}: {', '.join(names)}" for slot, names in sorted(parts.items()))


class Flamingo(nn.Module):
    """Vision encoder + perceiver + LM decoder with gated cross-attention before selected layers.

    A cross-attention block sits before decoder layer ``idx`` when ``(idx + 1) % n == 0``, or before each layer
    of ``cfg.cross_attn_layers`` when that is set.
    """

    def __init__(self, vision: nn.Module, decoder: Decoder, cfg: FlamingoConfig, media_token_id: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.vision_encoder = vision
        dim_visual = int(vision.width)  # type: ignore[arg-type]
        self.perceiver = PerceiverResampler(dim_visual, cfg)
        self.lang = decoder
        self.xattn = nn.ModuleDict({
            str(i): GatedCrossAttentionBlock(decoder.hidden_size, dim_visual, cfg)
            for i in cfg.xattn_layers(len(decoder.blocks))
        })
        self.media_token_id = media_token_id
        self.stages: Placement | None = None
        """Set by ``models/placement.py`` when the model is split into stages: decoder layer i (with its
        cross-attention block) runs on ``stages.devices[stages.layers[i]]``; None: one device, no split."""

    @property
    def input_device(self) -> torch.device:
        """Where token ids, masks and positions go in (the token embeddings; the LM head sits with them)."""
        return self.lang.input_embeddings().weight.device

    @property
    def vision_device(self) -> torch.device:
        """Where pixels go in (the vision encoder)."""
        return next(self.vision_encoder.parameters(), self.perceiver.latents).device

    @property
    def latent_device(self) -> torch.device:
        """Where image latents come out (the perceiver) and are cached."""
        return self.perceiver.latents.device

    def encode_images(self, pixels: Tensor) -> Tensor:
        """(I, 3, H, W) -> (I, N, Dv) latents: vision tokens through the perceiver."""
        return self.encode_media(pixels[:, None])

    def encode_media(self, pixels: Tensor) -> Tensor:
        """(I, F, 3, H, W) frames of I media items (F = 1 for images) -> (I, N, Dv) latents.

        All I*F frames go through the vision encoder as one batch.
        """
        items, frames = pixels.shape[:2]
        feats = self.vision_encoder(pixels.flatten(0, 1))  # (I*F, V, Dv)
        feats = feats.view(items, frames, *feats.shape[1:]).to(self.latent_device)  # (I, F, V, Dv)
        return self.perceiver(feats)  # (I, N, Dv)

    def conditions_on_media(self) -> bool:
        """False when every cross-attention block is an exact identity (all gates zero)."""
        return any(not blk.is_identity() for blk in self.xattn.values())  # type: ignore[operator]

    def latent_shape(self) -> tuple[int, int]:
        """(N, Dv): the shape of one image's latents (what ``encode_images`` returns per image)."""
        n, dim = self.perceiver.latents.shape
        return int(n), int(dim)

    def banned_token_ids(self) -> tuple[int, ...]:
        """Tokens never generated: ``<image>`` has no picture behind it when generated."""
        return (self.media_token_id,)

    def stop_token_ids(self) -> tuple[int, ...]:
        """Tokens that end generation whatever the request's stop strings (none: OpenFlamingo stops at the
        request's ``<|endofchunk|>``)."""
        return ()

    def image_switch_ids(self) -> tuple[int, ...]:
        """Tokens that change which image the text after them sees (``image_index``)."""
        return (self.media_token_id,)

    def image_index(self, input_ids: Tensor, media: MediaState) -> Tensor:
        """(B, T) image each new token attends to (1..M, 0 = none), advancing ``media``'s counters.

        OpenFlamingo's rule: the most recent ``<image>`` at or before the token.
        """
        img_idx = media.images_seen[:, None] + (input_ids == self.media_token_id).long().cumsum(-1)  # (B, T)
        media.images_seen = img_idx[:, -1]
        return img_idx

    def media_state(self, latents: Tensor, num_rows: int) -> MediaState:
        """latents (B, M, N, Dv) (rows padded to M) -> per-layer projected K/V, computed once."""
        moved: dict[torch.device, Tensor] = {}  # latents copied once per device of a split model
        kv = {}
        for i, blk in self.xattn.items():
            if not blk.is_identity():  # type: ignore[operator]
                dev = next(blk.parameters()).device  # the block's device (a split model: its layer's)
                if dev not in moved:
                    moved[dev] = latents.to(dev)
                kv[int(i)] = blk.project_media(moved[dev])  # type: ignore[operator]
        seen = torch.zeros(num_rows, dtype=torch.long, device=self.input_device)
        return MediaState(kv=kv, images_seen=seen)

    def forward(self, input_ids: Tensor, key_valid: Tensor | None, cache: KVCache, media: MediaState,
                last_only: bool = False, attn: AttnInputs | None = None) -> Tensor:
        """Run new tokens (B, T) through the model, extending ``cache`` and ``media``.

        ``key_valid`` (B, S) marks real (non-pad) positions among cached + new tokens; the causal mask and
        positions follow from it. ``attn`` replaces both (e.g. a token tree: each token sees its ancestors);
        then ``input_ids`` must hold no ``<image>`` token. Returns logits (B, T, V), or (B, 1, V) for the
        last position when ``last_only``.
        """
        img_idx = self.image_index(input_ids, media)  # (B, T)
        if attn is None:
            assert key_valid is not None, "give key_valid or attn"
            attn = build_attn_inputs(key_valid, input_ids.shape[1])
        x = self.lang.embed(input_ids, attn.positions)
        inputs, cur = _StageInputs(attn, img_idx, media.latents), -1
        a, idx, latents = attn, img_idx, media.latents
        for i, block in enumerate(self.lang.blocks):
            if self.stages is not None and self.stages.layers[i] != cur:  # next pipeline stage
                cur = self.stages.layers[i]
                x = x.to(self.stages.devices[cur])  # only the activation moves between stages
                a, idx, latents = inputs.on(cur, self.stages.devices[cur])
            if latents is not None and str(i) in self.xattn:  # reference: re-project, masked kernel
                blk = self.xattn[str(i)]
                k, v = blk.project_media(latents)  # type: ignore[operator]
                x = blk(x, k, v, idx, True)
            elif i in media.kv:
                k, v = media.kv[i]
                x = self.xattn[str(i)](x, k, v, idx, memo=a.memo)
            x = block(x, a, cache, i)
        if last_only:
            x = x[:, -1:]
        return self.lang.head(x.to(img_idx.device))


class _StageInputs:
    """A forward's per-token inputs, copied once to each stage of a split model (each with its own memo)."""

    def __init__(self, attn: AttnInputs, img_idx: Tensor, latents: Tensor | None) -> None:
        self._inputs = (attn, img_idx, latents)
        self._by_stage: dict[int, tuple[AttnInputs, Tensor, Tensor | None]] = {}

    def on(self, stage: int, device: torch.device) -> tuple[AttnInputs, Tensor, Tensor | None]:
        got = self._by_stage.get(stage)
        if got is None:
            attn, img_idx, latents = self._inputs
            got = (attn.to(device), img_idx.to(device), None if latents is None else latents.to(device))
            self._by_stage[stage] = got
        return got
