"""Frozen vision encoders: an image becomes a grid of feature tokens for the perceiver resampler.

Shape legend: B batch, H/W pixels, V visual tokens per image (``num_tokens``), Dv feature width
(``width``). Every encoder maps ``(B, 3, H, W) -> (B, V, Dv)``; the perceiver (Alayrac et al. 2022,
sec. 2.1) resamples those V tokens into a fixed number of latents.

* ``open_clip``: the ViT tower OpenFlamingo uses (Awadalla et al. 2023, arXiv 2308.01390) with
  ``output_tokens=True``; ``forward`` returns the second output of ``model.visual``, i.e. the
  post-LayerNorm patch tokens without the class token: (B, 256, 1024) for ViT-L-14 at 224 px.
* ``efficientnet_lite0``: ImageNet-pretrained EfficientNet-Lite0 (Tan & Le 2019); the last 1280x7x7
  feature map as (B, 49, 1280). Small and offline: the vision tower of the ``mini`` model.
* ``tiny_conv``: a seeded two-layer conv net for fast numerics tests.

Encoders are built in eval mode with gradients off; random initialisation is seeded and never
touches the global RNG state. ``fingerprint()`` identifies the weights for on-disk feature caches.

``encode_fixed_batches`` runs any per-image encoder on chunks of one constant size (the last chunk
padded), so an image's features never depend on how many images were encoded with it: CPU (oneDNN/MKL)
and GPU libraries pick kernels, blockings and reduction orders by tensor shape, so the same image in a
batch of 1 and in a batch of 2 can differ in the last bits (measured: 1.7e-6 on ViT-S/32 with 2 threads).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn
from torchvision import transforms as T

from flamingo_eval.errors import UserError
from flamingo_eval.models.weight_files import check_file, read_state_file
from flamingo_eval.registry import VISION

__all__ = ["EfficientNetLite0Encoder", "OpenClipEncoder", "TinyConvEncoder", "VisionEncoder", "encode_fixed_batches"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """Run ``build`` under ``torch.manual_seed(seed)`` without disturbing the caller's CPU RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def encode_fixed_batches(encode: Callable[[Tensor], Tensor], pixels: Tensor, batch_size: int) -> Tensor:
    """``encode`` over chunks of exactly ``batch_size`` images along dim 0; the last chunk is zero-padded.

    Every call of ``encode`` then sees the same input shape, so the kernels (and their reduction order)
    are the same whatever the number of images and an image's output does not depend on its neighbours
    or on how many images were encoded together (tests/numerics/test_vision.py checks it bit for bit).
    The padding rows are computed and dropped: at most ``batch_size - 1`` wasted images per call.

    Args:
        encode: Maps ``(batch_size, ...)`` to ``(batch_size, ...)``, each row depending on its input row only.
        pixels: ``(I, ...)`` inputs, e.g. ``(I, 3, H, W)`` images.
        batch_size: The constant chunk size (>= 1).

    Returns:
        ``(I, ...)``: the concatenated outputs of the real rows.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = pixels.shape[0]
    outs = []
    for start in range(0, n, batch_size):
        chunk = pixels[start : start + batch_size]
        real = chunk.shape[0]
        if real < batch_size:  # pad to the constant shape; the zero rows are never returned
            pad = chunk.new_zeros((batch_size - real, *chunk.shape[1:]))
            chunk = torch.cat([chunk, pad])
        outs.append(encode(chunk)[:real])
    if not outs:
        return encode(pixels)  # no image: let ``encode`` give its own empty (0, ...) shape
    return torch.cat(outs)


def _load_state_dict_file(path: Path) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a ``torch.save`` file (``weights_only=True``)."""
    obj = read_state_file(path, "vision weights file", "pass an existing weights file (.safetensors or .pt)")
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise UserError(
            f"vision weights file {path} holds a {type(obj).__name__}, not a state dict; save model.state_dict()"
        )
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, Tensor)}


def _load_strict(module: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    """``load_state_dict(strict=True)`` with a one-line user error naming the file."""
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as e:  # size mismatches: one line, not one per tensor
        bad = [ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln]
        raise UserError(f"weights {path} do not fit this architecture ({len(bad)} tensors of another shape, e.g. "
                        f"{bad[0] if bad else str(e)[:200]}); pass the config they were trained with") from None
    if result.missing_keys or result.unexpected_keys:
        raise UserError(f"weights {path} do not match the encoder: missing {result.missing_keys[:3]}, "
                        f"unexpected {result.unexpected_keys[:3]}; pass a checkpoint for this architecture")


class VisionEncoder(nn.Module, metaclass=ABCMeta):
    """Base class: a frozen image -> token-grid encoder.

    Attributes:
        name: Registry name of the encoder family.
        width: Feature width Dv of each token.
        num_tokens: Tokens per image V.
    """

    name: str = "vision"
    width: int
    num_tokens: int

    def __init__(self) -> None:
        super().__init__()
        self._fp_key: tuple[tuple[int, int], ...] | None = None
        self._fp_value: str | None = None

    @abstractmethod
    def preprocess(self, img: Image.Image) -> Tensor:
        """Turn an RGB image into the ``(3, H, W)`` float tensor ``forward`` expects."""

    @abstractmethod
    def forward(self, pixels: Tensor) -> Tensor:
        """Encode ``(B, 3, H, W)`` pixels into ``(B, num_tokens, width)`` features."""

    def config(self) -> dict[str, Any]:
        """JSON-able description of the architecture and preprocessing (part of the fingerprint)."""
        return {"name": self.name, "width": self.width, "num_tokens": self.num_tokens}

    def fingerprint(self) -> str:
        """SHA-256 over ``config()`` and every parameter and buffer (name, dtype, shape, bytes).

        Cached; the cache is invalidated by any in-place change to a tensor (``load_state_dict``,
        ``copy_``) or a replaced tensor, tracked through tensor versions and identities.
        """
        tensors = sorted(self.state_dict(keep_vars=True).items())
        key = tuple((id(t), t._version) for _, t in tensors)
        if self._fp_value is not None and key == self._fp_key:
            return self._fp_value
        digest = hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode())
        for name, t in tensors:
            flat = t.detach().to("cpu").contiguous().reshape(-1)
            digest.update(f"{name}|{flat.dtype}|{tuple(t.shape)}|".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
        self._fp_key, self._fp_value = key, digest.hexdigest()
        return self._fp_value

    def _freeze(self) -> None:
        """Eval mode (batch-norm statistics, no dropout) and no gradients: the tower is frozen."""
        self.eval()
        self.requires_grad_(False)


@VISION.register("efficientnet_lite0")
class EfficientNetLite0Encoder(VisionEncoder):
    """EfficientNet-Lite0 (ImageNet) features: 224 px -> ``(B, 49, 1280)``.

    Preprocessing follows the weights package's documented usage: shorter side resized to ``image_size``
    (224; small images such as easy-VQA's 64x64 are upsampled), centre crop, ImageNet mean/std. The net
    downsamples by 32 (``same`` padding), so ``image_size`` S gives ``ceil(S / 32) ** 2`` tokens: the
    ``mini`` model uses 96 px (9 tokens), ~5x cheaper than 224 px on 64 px easy-VQA images.

    Args:
        pretrained: Load the ImageNet weights; ``False`` gives a seeded random init (for tests).
        weights: A local weights file overriding the packaged one (``.pth`` or ``.safetensors``).
        seed: Seed of the random initialisation (used when no weights are loaded).
        image_size: Input resolution in pixels (a multiple of 32 keeps the grid exact).
    """

    name = "efficientnet_lite0"
    width = 1280
    num_tokens = 49
    image_size = 224

    def __init__(self, pretrained: bool = True, weights: str | Path | None = None, seed: int = 0,
                 image_size: int = 224) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        if not 32 <= image_size <= 1024:
            raise UserError(f"efficientnet_lite0 image_size must be in 32..1024 pixels, got {image_size}")
        self.image_size = int(image_size)
        self.num_tokens = math.ceil(self.image_size / 32) ** 2
        self.net: Any = _seeded(seed, lambda: EfficientNet.from_name("efficientnet-lite0"))
        path: Path | None = Path(weights).expanduser() if weights is not None else None
        if path is None and pretrained:
            from flamingo_eval.models.assets import efficientnet_lite0_weights

            path = efficientnet_lite0_weights()
        if path is not None:
            _load_strict(self.net, _load_state_dict_file(path), path)
        self._transform = T.Compose(
            [
                T.Resize(self.image_size, interpolation=T.InterpolationMode.BILINEAR, antialias=True),
                T.CenterCrop(self.image_size),
                T.ToTensor(),
                T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )
        self._freeze()

    def preprocess(self, img: Image.Image) -> Tensor:
        return self._transform(img.convert("RGB"))

    def forward(self, pixels: Tensor) -> Tensor:
        fmap = self.net.extract_features(pixels)  # (B, 1280, 7, 7)
        return fmap.flatten(2).transpose(1, 2)  # (B, 49, 1280)

    def classify(self, pixels: Tensor) -> Tensor:
        """ImageNet logits ``(B, 1000)`` from the original head (a sanity check of the weights)."""
        return self.net(pixels)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "image_size": self.image_size, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}


@VISION.register("open_clip")
class OpenClipEncoder(VisionEncoder):
    """An open_clip ViT image tower returning patch tokens, as OpenFlamingo feeds its perceiver.

    Args:
        model_name: open_clip architecture (default ``"ViT-L-14"``); with ``config``, only a display name.
        pretrained: An open_clip tag (``"openai"``; must already be in the local cache when offline),
            a local checkpoint file (full CLIP or visual-only state dict, ``.safetensors`` or a
            weights-only torch file), or ``None`` for a seeded random init.
        force_quick_gelu: Use QuickGELU. open_clip sets it for the ``openai`` tag by itself; set it
            (or use ``"ViT-L-14-quickgelu"``) when loading a local copy of OpenAI weights.
        seed: Seed of the random initialisation.
        config: An open_clip model-config JSON file (the format ``open_clip.add_model_config`` reads) for
            an architecture open_clip does not ship; ``pretrained`` must then be a local file (or ``None``).
    """

    name = "open_clip"

    def __init__(
        self,
        model_name: str | None = None,
        pretrained: str | Path | None = "openai",
        force_quick_gelu: bool = False,
        seed: int = 0,
        config: str | Path | None = None,
    ) -> None:
        super().__init__()
        path = _as_local_file(pretrained)
        tag = None if path is not None or pretrained is None else str(pretrained)
        spec = None
        if config is not None:
            from flamingo_eval.models.open_clip_config import read_open_clip_config

            spec = read_open_clip_config(config)
            model_name = model_name or spec.name
            if tag is not None:
                raise UserError(f"open_clip config {spec.path}: pretrained='{tag}' is an open_clip tag, which only "
                                "names built-in models; pass the tower's weights file as model.vision.options."
                                "pretrained=FILE")
        model_name = model_name or "ViT-L-14"
        model, preprocess = _seeded_clip(model_name, tag, force_quick_gelu, seed, spec, quiet=tag is None)
        visual = model.visual
        if not hasattr(visual, "output_tokens") or not hasattr(visual, "grid_size"):
            raise UserError(f"open_clip model '{model_name}' has no ViT image tower; use a ViT-* model")
        if path is not None:
            state = _load_state_dict_file(path)
            if any(k.startswith("visual.") for k in state):
                state = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
            _load_strict(visual, state, path)
        visual.output_tokens = True  # forward returns (pooled, tokens); OpenFlamingo uses tokens
        self.visual = visual  # the text tower is dropped with ``model``
        self._preprocess = preprocess
        self.model_name, self.pretrained_id = model_name, str(pretrained)
        self.arch = spec.model_cfg if spec is not None else None
        self.width = int(visual.transformer.width)
        self.num_tokens = int(visual.grid_size[0] * visual.grid_size[1])
        self.quick_gelu = force_quick_gelu
        self._freeze()

    def preprocess(self, img: Image.Image) -> Tensor:
        return self._preprocess(img)

    def forward(self, pixels: Tensor) -> Tensor:
        _pooled, tokens = self.visual(pixels)  # tokens: (B, V, Dv), class token excluded
        return tokens

    def config(self) -> dict[str, Any]:
        arch = {"arch": self.arch} if self.arch is not None else {}  # a custom config: its content, not its name
        return {**super().config(), "model_name": self.model_name, "quick_gelu": self.quick_gelu, **arch}


def _as_local_file(pretrained: str | Path | None) -> Path | None:
    """The checkpoint path if ``pretrained`` names a file (or looks like one), else ``None``."""
    if pretrained is None:
        return None
    p = Path(pretrained).expanduser()
    looks_like_path = (
        isinstance(pretrained, Path)
        or "/" in str(pretrained)
        or p.suffix in {".pt", ".pth", ".bin", ".safetensors"}
    )
    if p.is_file() or looks_like_path:  # before building the tower: say at once what is wrong with the file
        return check_file(p, "vision weights file", "pass model.vision.options.pretrained=FILE (or an open_clip tag)")
    return None


def _seeded_clip(model_name: str, tag: str | None, quick_gelu: bool, seed: int, spec: Any = None,
                 quiet: bool = False) -> tuple[Any, Any]:
    """(open_clip model, preprocess) with seeded init and offline-friendly errors.

    ``quiet``: the weights are loaded by us afterwards (or a random tower was asked for), so open_clip's
    "initialized randomly" warning would mislead; it is dropped.
    """
    import open_clip

    from flamingo_eval.models.open_clip_config import build_from_config, quiet_random_init

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if spec is not None:
            return build_from_config(spec, quick_gelu)
        if model_name not in open_clip.list_models():
            raise UserError(f"unknown open_clip model '{model_name}'; see open_clip.list_models() (e.g. ViT-L-14), "
                            "or describe the architecture in a JSON file: model.vision.options.config=FILE")
        if tag is not None and tag not in open_clip.list_pretrained_tags_by_model(model_name):
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "(none)"
            raise UserError(
                f"open_clip has no pretrained tag '{tag}' for {model_name} (known: {tags}); or pass a local file"
            )
        try:
            with quiet_random_init() if quiet else contextlib.nullcontext():
                model, _, preprocess = open_clip.create_model_and_transforms(
                    model_name, pretrained=tag, force_quick_gelu=quick_gelu)
            return model, preprocess
        except Exception as err:  # noqa: BLE001 - a failed fetch surfaces as many exception types
            if tag is None:
                raise
            raise UserError(
                f"open_clip weights {model_name}/{tag} are not in the local cache and cannot be downloaded "
                f"({type(err).__name__}); pass a local checkpoint file as `pretrained`"
            ) from None


@VISION.register("tiny_conv")
class TinyConvEncoder(VisionEncoder):
    """A seeded random conv net: 32 px -> ``(B, num_tokens, width)``, for fast tests.

    Args:
        width: Feature width Dv.
        num_tokens: Tokens per image; must be a square (1, 4, 16, 64).
        seed: Seed of the initialisation.
    """

    name = "tiny_conv"
    image_size = 32

    def __init__(self, width: int = 32, num_tokens: int = 4, seed: int = 0) -> None:
        super().__init__()
        side = int(round(num_tokens**0.5))
        if side * side != num_tokens or not 1 <= side <= 8:
            raise UserError(f"tiny_conv num_tokens={num_tokens} must be a square between 1 and 64 (e.g. 4)")
        self.width, self.num_tokens, self.seed = width, num_tokens, seed

        def build() -> nn.Module:
            return nn.Sequential(
                nn.Conv2d(3, 16, 3, stride=2, padding=1),  # (B, 16, 16, 16)
                nn.GELU(),
                nn.Conv2d(16, width, 3, stride=2, padding=1),  # (B, Dv, 8, 8)
                nn.AdaptiveAvgPool2d(side),  # (B, Dv, side, side)
            )

        self.net = _seeded(seed, build)
        self._transform = T.Compose(
            [
                T.Resize((self.image_size, self.image_size), antialias=True),
                T.ToTensor(),
                T.Normalize((0.5,) * 3, (0.5,) * 3),
            ]
        )
        self._freeze()

    def preprocess(self, img: Image.Image) -> Tensor:
        return self._transform(img.convert("RGB"))

    def forward(self, pixels: Tensor) -> Tensor:
        return self.net(pixels).flatten(2).transpose(1, 2)  # (B, V, Dv)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "seed": self.seed, "image_size": self.image_size}
