"""IDEFICS on our Flamingo engine: decoupled LLaMA, IDEFICS perceiver, gated cross-attention every k layers.

Laurençon et al. 2023, "OBELICS: An Open Web-Scale Filtered Dataset of Interleaved Image-Text Documents"
(arXiv 2306.16527) trains IDEFICS, a Flamingo reproduction. Parameter names mirror transformers'
``IdeficsForVisionText2Text`` (``models/idefics/loading.py`` maps its checkpoint keys onto this module);
docs/idefics.md lists every way the architecture differs from OpenFlamingo.

Shape legend: B batch, T text tokens, M images per row, V vision tokens, N latents, Dv vision width,
D LM width, H heads, Dh head dim, L latents + vision tokens.

The class ``Idefics`` IS a ``Flamingo`` (same forward, media state, caches and kernels); it swaps the parts:
the perceiver (or none: ``use_resampler: false`` feeds all vision tokens to the cross-attention), the
cross-attention blocks, their placement (before layer ``i`` when ``i % cross_layer_interval == 0``), the
decoupled embedding/head, and the image-attention rule (``image_index``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flamingo_eval.errors import UserError
from flamingo_eval.models.cross_attention import _heads, masked_cross_attention_reference, segment_attention
from flamingo_eval.models.decoders.base import lm_logits
from flamingo_eval.models.decoders.layers import RMSNorm
from flamingo_eval.models.decoders.llama import LlamaConfig, LlamaDecoder, LlamaMLP
from flamingo_eval.models.flamingo import Flamingo, MediaState
from flamingo_eval.models.idefics.vision import IdeficsVisionConfig, IdeficsVisionTransformer


@dataclass
class PerceiverConfig:
    resampler_n_latents: int = 64
    resampler_depth: int = 6
    resampler_n_heads: int = 16
    resampler_head_dim: int = 96
    qk_layer_norms_perceiver: bool = False


@dataclass
class IdeficsConfig:
    """What our model needs from an IDEFICS ``config.json`` (defaults: transformers' ``IdeficsConfig``)."""

    vocab_size: int = 32000
    additional_vocab_size: int = 0
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    hidden_act: str = "silu"
    cross_layer_interval: int = 1
    qk_layer_norms: bool = False
    use_resampler: bool = False
    alpha_type: str = "float"
    tie_word_embeddings: bool = False
    eos_token_id: int = 2
    vision: IdeficsVisionConfig = field(default_factory=IdeficsVisionConfig)
    perceiver: PerceiverConfig = field(default_factory=PerceiverConfig)

    @classmethod
    def from_hf(cls, conf: dict[str, Any], source: str) -> IdeficsConfig:
        """Read a ``config.json`` dict; unsupported settings are one ``UserError`` naming the field."""
        skip = {"vision", "perceiver"}
        kw = {k: conf[k] for k in cls.__dataclass_fields__ if k not in skip and conf.get(k) is not None}
        rope = conf.get("rope_parameters") or conf.get("rope_scaling") or {}
        if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
            raise UserError(f"{source}: rope {rope} is not supported by our IDEFICS model (only plain RoPE)")
        if "rope_theta" in rope:
            kw["rope_theta"] = rope["rope_theta"]
        if isinstance(kw.get("eos_token_id"), list):
            kw["eos_token_id"] = kw["eos_token_id"][0]
        perc = conf.get("perceiver_config") or {}
        cfg = cls(**kw, vision=IdeficsVisionConfig.from_hf(conf.get("vision_config") or {}),
                  perceiver=PerceiverConfig(**{k: perc[k] for k in PerceiverConfig.__dataclass_fields__ if k in perc}))
        for name, ok in (("hidden_act", cfg.hidden_act == "silu"),
                         ("alpha_type", cfg.alpha_type in ("float", "vector")),
                         ("cross_layer_interval", cfg.num_hidden_layers % max(1, cfg.cross_layer_interval) == 0
                          and cfg.cross_layer_interval >= 1)):
            if not ok:
                raise UserError(f"{source}: config.json {name}={getattr(cfg, name)!r} is not supported by our "
                                "IDEFICS model (silu; float|vector; an interval dividing num_hidden_layers)")
        return cfg


# ---------------------------------------------------------------------------------------------- text side
class DecoupledEmbedding(nn.Embedding):
    """``vocab_size`` pretrained rows (``weight``) + ``additional_vocab_size`` rows (``additional_embedding``).

    Ids >= ``vocab_size`` (IDEFICS's ``<fake_token_around_image>``, ``<image>``) read the additional table.
    """

    def __init__(self, num: int, additional: int, dim: int) -> None:
        super().__init__(num, dim)
        self.additional_embedding = nn.Embedding(additional, dim) if additional > 0 else None

    def forward(self, input_ids: Tensor) -> Tensor:
        n = self.num_embeddings
        out = F.embedding(input_ids.clamp(max=n - 1), self.weight)  # (B, T, D)
        if self.additional_embedding is not None:
            extra = input_ids >= n
            if bool(extra.any()):
                out = out.clone()
                out[extra] = self.additional_embedding(input_ids[extra] - n)
        return out


class DecoupledLinear(nn.Linear):
    """Logits over the pretrained vocabulary (``weight``) then the additional tokens (``additional_fc``)."""

    def __init__(self, dim: int, num: int, additional: int) -> None:
        super().__init__(dim, num, bias=False)
        self.additional_fc = nn.Linear(dim, additional, bias=False) if additional > 0 else None

    def forward(self, x: Tensor) -> Tensor:
        out = F.linear(x, self.weight)
        return out if self.additional_fc is None else torch.cat([out, self.additional_fc(x)], dim=-1)


class IdeficsDecoder(LlamaDecoder):
    """Our LLaMA decoder (``model.layers.*`` names as in the checkpoint) with the decoupled embedding and head.

    ``vocab_size`` is the total: pretrained + additional tokens (the logits' width).
    """

    family = "idefics_llama"

    def __init__(self, cfg: IdeficsConfig) -> None:
        llama = LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                            intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_hidden_layers,
                            num_attention_heads=cfg.num_attention_heads, num_key_value_heads=cfg.num_attention_heads,
                            rms_norm_eps=cfg.rms_norm_eps, rope_theta=cfg.rope_theta, tie_word_embeddings=False)
        super().__init__(llama)
        extra = cfg.additional_vocab_size
        self.model.embed_tokens = DecoupledEmbedding(cfg.vocab_size, extra, cfg.hidden_size)
        self.lm_head = DecoupledLinear(cfg.hidden_size, cfg.vocab_size, extra)
        self.tied = cfg.tie_word_embeddings
        self.tie_head()
        self.vocab_size = cfg.vocab_size + extra

    def head(self, x: Tensor) -> Tensor:
        """Final norm, then logits over the pretrained vocabulary and the additional tokens (fp32 out)."""
        x = self.model.norm(x)
        head = self.lm_head
        assert isinstance(head, DecoupledLinear)
        out = lm_logits(x, head.weight)
        if head.additional_fc is None:
            return out
        return torch.cat([out, lm_logits(x, head.additional_fc.weight)], dim=-1)

    def tie_head(self) -> None:
        """With ``tie_word_embeddings``, point both head parts at the embedding tables (transformers ties them);
        called again after loading, which assigns parameters one name at a time."""
        emb, head = self.model.embed_tokens, self.lm_head
        if not self.tied or not isinstance(emb, DecoupledEmbedding) or not isinstance(head, DecoupledLinear):
            return
        head.weight = emb.weight
        if head.additional_fc is not None and emb.additional_embedding is not None:
            head.additional_fc.weight = emb.additional_embedding.weight


# ---------------------------------------------------------------------------------------------- bridge
class IdeficsPerceiverAttention(nn.Module):
    """Latents attend to [vision tokens; latents], optional LayerNorm on q and k per head."""

    def __init__(self, dim: int, heads: int, head_dim: int, qk_norm: bool) -> None:
        super().__init__()
        self.heads = heads
        self.context_layer_norm = nn.LayerNorm(dim)
        self.latents_layer_norm = nn.LayerNorm(dim)
        self.q_layer_norm = nn.LayerNorm(head_dim) if qk_norm else None
        self.k_layer_norm = nn.LayerNorm(head_dim) if qk_norm else None
        self.q_proj = nn.Linear(dim, heads * head_dim, bias=False)
        self.k_proj = nn.Linear(dim, heads * head_dim, bias=False)
        self.v_proj = nn.Linear(dim, heads * head_dim, bias=False)
        self.output_proj = nn.Linear(heads * head_dim, dim, bias=False)

    def forward(self, context: Tensor, latents: Tensor) -> Tensor:
        """context (I, V, Dv), latents (I, N, Dv) -> (I, N, Dv)."""
        context, latents = self.context_layer_norm(context), self.latents_layer_norm(latents)
        both = torch.cat([context, latents], dim=1)  # (I, V + N, Dv)
        q = _heads(self.q_proj(latents), self.heads)  # (I, H, N, Dh)
        k, v = _heads(self.k_proj(both), self.heads), _heads(self.v_proj(both), self.heads)
        if self.q_layer_norm is not None and self.k_layer_norm is not None:
            q, k = self.q_layer_norm(q), self.k_layer_norm(k)
        out = F.scaled_dot_product_attention(q, k, v)  # (I, H, N, Dh)
        return self.output_proj(out.transpose(1, 2).flatten(2))


class IdeficsPerceiverMLP(nn.Module):
    """LayerNorm -> Linear -> ReLU -> Linear (OpenFlamingo's perceiver uses GELU)."""

    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, inner, bias=False)
        self.c_proj = nn.Linear(inner, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(F.relu(self.fc(self.ln(x))))


class IdeficsPerceiverResampler(nn.Module):
    """(I, V, Dv) vision tokens -> (I, N, Dv) latents; ``blocks.<d>.0`` attention, ``blocks.<d>.1`` MLP."""

    def __init__(self, dim: int, cfg: PerceiverConfig) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.zeros(cfg.resampler_n_latents, dim))
        self.blocks = nn.ModuleList(
            nn.ModuleList([IdeficsPerceiverAttention(dim, cfg.resampler_n_heads, cfg.resampler_head_dim,
                                                     cfg.qk_layer_norms_perceiver),
                           IdeficsPerceiverMLP(dim, 4 * dim)])
            for _ in range(cfg.resampler_depth))
        self.layer_norm = nn.LayerNorm(dim)

    def forward(self, context: Tensor) -> Tensor:
        latents = self.latents[None].expand(context.shape[0], -1, -1)
        for block in self.blocks:
            attn, mlp = block[0], block[1]  # type: ignore[index]
            latents = attn(context, latents) + latents
            latents = mlp(latents) + latents
        return self.layer_norm(latents)


class IdeficsCrossAttention(nn.Module):
    """Text queries over one image's latents; q/k RMSNorm per head when ``qk_layer_norms``; no rotary."""

    def __init__(self, cfg: IdeficsConfig) -> None:
        super().__init__()
        d, dv, self.heads = cfg.hidden_size, cfg.vision.embed_dim, cfg.num_attention_heads
        head_dim = d // self.heads
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(dv, d, bias=False)
        self.v_proj = nn.Linear(dv, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)
        self.q_layer_norm = RMSNorm(head_dim, cfg.rms_norm_eps) if cfg.qk_layer_norms else None
        self.k_layer_norm = RMSNorm(head_dim, cfg.rms_norm_eps) if cfg.qk_layer_norms else None

    def project_media(self, latents: Tensor) -> tuple[Tensor, Tensor]:
        """(B, M, N, Dv) -> k, v each (B, M, H, N, Dh); the k norm is applied here, once per prompt."""
        k, v = _heads(self.k_proj(latents), self.heads), _heads(self.v_proj(latents), self.heads)
        return (k if self.k_layer_norm is None else self.k_layer_norm(k)), v

    def forward(self, x: Tensor, k: Tensor, v: Tensor, img_idx: Tensor, masked: bool = False,
                memo: dict | None = None) -> Tensor:
        q = _heads(self.q_proj(x), self.heads)  # (B, H, T, Dh)
        if self.q_layer_norm is not None:
            q = self.q_layer_norm(q)
        out = (masked_cross_attention_reference(q, k, v, img_idx) if masked
               else segment_attention(q, k, v, img_idx, memo))
        return self.o_proj(out.transpose(1, 2).flatten(2))  # zero rows: img_idx == 0


class IdeficsGatedCrossAttentionLayer(nn.Module):
    """x += tanh(alpha_cross_attn) * xattn(RMSNorm(x)); x += tanh(alpha_dense) * SwiGLU(RMSNorm(x)).

    Text attending to no image gets a zero cross-attention output (``cross_attention_gate``); the dense part
    still applies to every token. ``alpha_*`` are one float each or one per feature (``alpha_type: vector``).
    """

    def __init__(self, cfg: IdeficsConfig) -> None:
        super().__init__()
        shape = (1, 1, cfg.hidden_size) if cfg.alpha_type == "vector" else (1,)
        self.cross_attn = IdeficsCrossAttention(cfg)
        llama = LlamaConfig(vocab_size=1, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                            num_hidden_layers=0, num_attention_heads=cfg.num_attention_heads, num_key_value_heads=1)
        self.mlp = LlamaMLP(llama)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.alpha_cross_attn = nn.Parameter(torch.zeros(shape))
        self.alpha_dense = nn.Parameter(torch.zeros(shape))

    def is_identity(self) -> bool:
        return bool((self.alpha_cross_attn == 0).all() and (self.alpha_dense == 0).all())

    def project_media(self, latents: Tensor) -> tuple[Tensor, Tensor]:
        return self.cross_attn.project_media(latents)

    def forward(self, x: Tensor, k: Tensor, v: Tensor, img_idx: Tensor, masked: bool = False,
                memo: dict | None = None) -> Tensor:
        x = x + self.alpha_cross_attn.tanh() * self.cross_attn(self.input_layernorm(x), k, v, img_idx, masked,
                                                               memo)
        return x + self.alpha_dense.tanh() * self.mlp(self.post_attention_layernorm(x))


# ---------------------------------------------------------------------------------------------- model
class Idefics(Flamingo):
    """IDEFICS with our engine's interface (``Flamingo``); built from ``IdeficsConfig`` with meta-free params.

    Attribute names map to the checkpoint: ``vision_encoder`` <- ``model.vision_model``, ``perceiver`` <-
    ``model.perceiver_resampler`` (``nn.Identity`` without resampler), ``lang`` <- ``model.embed_tokens / layers
    / norm`` + ``lm_head``, ``xattn[str(i)]`` <- ``model.gated_cross_attn_layers[i // cross_layer_interval]``.
    """

    vision_encoder: IdeficsVisionTransformer
    lang: IdeficsDecoder

    def __init__(self, cfg: IdeficsConfig, media_token_id: int, fake_token_id: int) -> None:
        nn.Module.__init__(self)  # Flamingo.__init__ would build OpenFlamingo's parts
        self.idefics_cfg = cfg
        self.vision_encoder = IdeficsVisionTransformer(cfg.vision)
        dv = cfg.vision.embed_dim
        self.perceiver = (IdeficsPerceiverResampler(dv, cfg.perceiver) if cfg.use_resampler  # type: ignore[assignment]
                          else nn.Identity())
        self.lang = IdeficsDecoder(cfg)
        every = cfg.cross_layer_interval
        self.xattn = nn.ModuleDict({str(i): IdeficsGatedCrossAttentionLayer(cfg)
                                    for i in range(cfg.num_hidden_layers) if i % every == 0})
        self.media_token_id, self.fake_token_id, self.eos_token_id = media_token_id, fake_token_id, cfg.eos_token_id
        self.stages = None  # one device (model.device_map splits only OpenFlamingo-layout models)

    @property
    def vision_device(self) -> torch.device:
        """Where pixels go in (the vision tower)."""
        return next(self.vision_encoder.parameters()).device

    @property
    def latent_device(self) -> torch.device:
        """Where latents come out: the resampler's device, or the vision tower's when there is none."""
        if isinstance(self.perceiver, IdeficsPerceiverResampler):
            return self.perceiver.latents.device
        return self.vision_device

    def encode_images(self, pixels: Tensor) -> Tensor:
        """(I, 3, H, W) -> (I, N, Dv): the vision tower's tokens through the resampler (or all of them)."""
        return self.perceiver(self.vision_encoder(pixels).to(self.latent_device))

    def encode_media(self, pixels: Tensor) -> Tensor:
        """(I, 1, 3, H, W) -> (I, N, Dv). IDEFICS was trained on images only: a video is refused."""
        if pixels.shape[1] != 1:
            raise UserError(f"IDEFICS takes images only, got a media item of {pixels.shape[1]} frames; evaluate "
                            "video benchmarks with an OpenFlamingo-layout model")
        return self.encode_images(pixels[:, 0])

    def latent_shape(self) -> tuple[int, int]:
        if isinstance(self.perceiver, IdeficsPerceiverResampler):
            n, dim = self.perceiver.latents.shape
            return int(n), int(dim)
        return self.vision_encoder.num_tokens, self.vision_encoder.width

    def banned_token_ids(self) -> tuple[int, ...]:
        """``<image>`` and ``<fake_token_around_image>`` (transformers' IDEFICS guide bans both)."""
        return (self.media_token_id, self.fake_token_id)

    def stop_token_ids(self) -> tuple[int, ...]:
        """``</s>`` ends generation (transformers' ``generate`` default for IDEFICS)."""
        return (self.eos_token_id,)

    def image_switch_ids(self) -> tuple[int, ...]:
        return (self.media_token_id, self.eos_token_id)

    def image_index(self, input_ids: Tensor, media: MediaState) -> Tensor:
        """transformers' IDEFICS processor rule: the most recent ``<image>``, except that text after an
        end-of-document token ``</s>`` (the ``</s>`` itself excluded) sees no image until the next ``<image>``.

        ``media.no_image`` carries "past a ``</s>``" across forwards (shared prefix, then the rest).
        """
        is_img = input_ids == self.media_token_id
        count = media.images_seen[:, None] + is_img.long().cumsum(-1)  # (B, T)
        t = input_ids.shape[1]
        pos = torch.arange(1, t + 1, device=input_ids.device).expand_as(input_ids)  # 1-based positions
        last_img = (pos * is_img).cummax(-1).values  # (B, T): position of the latest image, 0 = none here
        eod = F.pad((pos * (input_ids == self.eos_token_id))[:, :-1], (1, 0))  # a </s> blocks what FOLLOWS it
        last_eod = eod.cummax(-1).values
        carried = (media.no_image if media.no_image is not None
                   else torch.zeros_like(media.images_seen, dtype=torch.bool))
        blocked = (last_eod > last_img) | (carried[:, None] & (last_img == 0))  # (B, T)
        media.images_seen = count[:, -1]
        media.no_image = blocked[:, -1] | (input_ids[:, -1] == self.eos_token_id)
        return count.masked_fill(blocked, 0)
