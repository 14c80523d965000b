"""IDEFICS's vision tower: a CLIP ViT (ViT-H/14 in the released models) returning every token.

Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision"; the IDEFICS
models use OpenCLIP's laion2b ViT-H/14 weights stored under transformers' ``IdeficsVisionTransformer`` names
(``model.vision_model.*`` in the checkpoint). Parameter names here mirror that module one to one.

What IDEFICS feeds onward is the encoder's LAST HIDDEN STATE, class token included and without the final
LayerNorm (``post_layernorm`` only normalises the pooled class token, which IDEFICS never uses): (B, 1 + P, Dv),
P = (image_size / patch_size)^2 patches. OpenFlamingo instead takes open_clip's post-LayerNorm patch tokens.

Shape legend: B images, P patches, L = 1 + P tokens, Dv width, H heads, Dh head dim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF
from torchvision.transforms.v2 import functional as TF2

from flamingo_eval.errors import UserError
from flamingo_eval.models.vision import VisionEncoder

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""IDEFICS's image processor normalisation (OpenAI CLIP's statistics)."""

ACTIVATIONS = {"gelu": lambda x: F.gelu(x), "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
               "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
               "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh")}


@dataclass
class IdeficsVisionConfig:
    """The ``vision_config`` of an IDEFICS ``config.json`` (defaults: transformers' ``IdeficsVisionConfig``)."""

    embed_dim: int = 768
    image_size: int = 224
    intermediate_size: int = 5120
    patch_size: int = 14
    num_hidden_layers: int = 32
    num_attention_heads: int = 16
    num_channels: int = 3
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-5

    @classmethod
    def from_hf(cls, conf: dict[str, Any]) -> IdeficsVisionConfig:
        kw = {k: conf[k] for k in cls.__dataclass_fields__ if conf.get(k) is not None}
        if "embed_dim" not in kw and conf.get("hidden_size") is not None:
            kw["embed_dim"] = conf["hidden_size"]
        cfg = cls(**kw)
        if cfg.hidden_act not in ACTIVATIONS:
            raise UserError(f"IDEFICS vision_config.hidden_act '{cfg.hidden_act}' is not supported "
                            f"(known: {', '.join(sorted(ACTIVATIONS))})")
        return cfg


class IdeficsVisionEmbeddings(nn.Module):
    def __init__(self, cfg: IdeficsVisionConfig) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.class_embedding = nn.Parameter(torch.zeros(d))
        self.patch_embedding = nn.Conv2d(cfg.num_channels, d, cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.position_embedding = nn.Embedding((cfg.image_size // cfg.patch_size) ** 2 + 1, d)

    def forward(self, pixels: Tensor) -> Tensor:
        """(B, C, S, S) -> (B, L, Dv): class token then patches, plus learned positions."""
        patches = self.patch_embedding(pixels.to(self.patch_embedding.weight.dtype)).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(pixels.shape[0], 1, -1)
        return torch.cat([cls, patches], dim=1) + self.position_embedding.weight[None]


class IdeficsVisionAttention(nn.Module):
    def __init__(self, cfg: IdeficsVisionConfig) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.heads = cfg.num_attention_heads
        if d % self.heads:
            raise UserError(f"IDEFICS vision embed_dim {d} is not divisible by num_attention_heads {self.heads}")
        self.k_proj, self.v_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.q_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = (p(x).view(b, n, self.heads, d // self.heads).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))  # (B, H, L, Dh)
        out = F.scaled_dot_product_attention(q, k, v)  # bidirectional: every token sees every token
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class IdeficsVisionMLP(nn.Module):
    def __init__(self, cfg: IdeficsVisionConfig) -> None:
        super().__init__()
        self.act = ACTIVATIONS[cfg.hidden_act]
        self.fc1 = nn.Linear(cfg.embed_dim, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class IdeficsVisionEncoderLayer(nn.Module):
    def __init__(self, cfg: IdeficsVisionConfig) -> None:
        super().__init__()
        self.self_attn = IdeficsVisionAttention(cfg)
        self.layer_norm1 = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)
        self.mlp = IdeficsVisionMLP(cfg)
        self.layer_norm2 = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class IdeficsVisionEncoder(nn.Module):
    def __init__(self, cfg: IdeficsVisionConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(IdeficsVisionEncoderLayer(cfg) for _ in range(cfg.num_hidden_layers))


class IdeficsVisionTransformer(VisionEncoder):
    """``(B, 3, S, S)`` pixels -> ``(B, 1 + P, Dv)`` last hidden states (class token first, no final norm)."""

    name = "idefics_vit"

    def __init__(self, cfg: IdeficsVisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.width = cfg.embed_dim
        self.num_tokens = (cfg.image_size // cfg.patch_size) ** 2 + 1
        self.embeddings = IdeficsVisionEmbeddings(cfg)
        self.pre_layrnorm = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)  # sic: the checkpoint's name
        self.encoder = IdeficsVisionEncoder(cfg)
        # Loaded (strict accounting: the checkpoint has it) but unused: it only normalises the pooled output.
        self.post_layernorm = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)
        self.image_mean, self.image_std = CLIP_MEAN, CLIP_STD  # preprocessor_config.json's, when it has them

    def preprocess(self, img: Image.Image) -> Tensor:
        """transformers' ``IdeficsImageProcessor``: RGB, bicubic (antialiased) resize of the uint8 image to
        ``image_size`` square (no crop, aspect ratio not kept), then (x - 255 mean) / (255 std).

        The resize is torchvision v2's uint8 kernel, as transformers' torchvision backend calls it (the v1
        ``functional.resize`` of a uint8 tensor rounds differently: up to 13/255 apart)."""
        size = self.cfg.image_size
        pixels = TF.pil_to_tensor(img.convert("RGB"))  # (3, H, W) uint8
        pixels = TF2.resize(pixels, [size, size], interpolation=InterpolationMode.BICUBIC, antialias=True)
        mean = torch.tensor(self.image_mean)[:, None, None] * 255.0
        std = torch.tensor(self.image_std)[:, None, None] * 255.0
        return (pixels.float() - mean) / std

    def forward(self, pixels: Tensor) -> Tensor:
        x = self.pre_layrnorm(self.embeddings(pixels))
        for layer in self.encoder.layers:
            x = layer(x)
        return x

    def config(self) -> dict[str, Any]:
        return {**super().config(), **self.cfg.__dict__, "image_mean": list(self.image_mean),
                "image_std": list(self.image_std)}
