"""Vision encoders: documented shapes, image sensitivity, determinism, fingerprints, real weights."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from flamingo_eval.errors import UserError
from flamingo_eval.models.vision import (
    EfficientNetLite0Encoder,
    OpenClipEncoder,
    TinyConvEncoder,
    VisionEncoder,
    encode_fixed_batches,
)
from flamingo_eval.registry import VISION


def _picture(kind: str, size: int = 64) -> Image.Image:
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    if kind == "circle":
        draw.ellipse((8, 8, size - 8, size - 8), fill="red")
    else:
        draw.rectangle((4, 20, size - 4, size - 20), fill="blue")
    return img


def _encode(enc: VisionEncoder, *imgs: Image.Image) -> torch.Tensor:
    with torch.no_grad():
        return enc(torch.stack([enc.preprocess(i) for i in imgs]))


def test_registry_names() -> None:
    assert {"efficientnet_lite0", "open_clip", "tiny_conv"} <= set(VISION.names())


def test_tiny_conv_shapes_seed_and_images() -> None:
    enc = VISION.get("tiny_conv")(seed=3)
    pix = enc.preprocess(_picture("circle"))
    assert pix.shape == (3, 32, 32)
    out = _encode(enc, _picture("circle"), _picture("box"))
    assert out.shape == (2, enc.num_tokens, enc.width) == (2, 4, 32)
    assert not torch.allclose(out[0], out[1])
    again = TinyConvEncoder(seed=3)
    # Batch 1 vs batch 2: other shapes may pick other kernels, so only equal up to float noise.
    assert torch.allclose(_encode(again, _picture("circle"))[0], out[0], atol=1e-5)
    assert again.fingerprint() == enc.fingerprint()
    assert TinyConvEncoder(seed=4).fingerprint() != enc.fingerprint()
    assert not any(p.requires_grad for p in enc.parameters()) and not enc.training


def test_seeded_init_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    TinyConvEncoder(seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_fingerprint_cached_and_invalidated_by_weight_change() -> None:
    enc = TinyConvEncoder(seed=0)
    first = enc.fingerprint()
    assert enc.fingerprint() == first
    with torch.no_grad():
        next(enc.parameters()).add_(1.0)
    assert enc.fingerprint() != first
    enc.load_state_dict(TinyConvEncoder(seed=0).state_dict())
    assert enc.fingerprint() == first


def test_tiny_conv_rejects_bad_token_count() -> None:
    with pytest.raises(UserError, match="num_tokens"):
        TinyConvEncoder(num_tokens=5)


@pytest.fixture(scope="module")
def lite0() -> EfficientNetLite0Encoder:
    return EfficientNetLite0Encoder(pretrained=True)


def test_efficientnet_shapes_and_small_images(lite0: EfficientNetLite0Encoder) -> None:
    small = _picture("circle", 64)  # easy-VQA size: upsampled to 224
    assert lite0.preprocess(small).shape == (3, 224, 224)
    out = _encode(lite0, small, _picture("box", 300))
    assert out.shape == (2, 49, 1280)
    cos = torch.nn.functional.cosine_similarity(out[0].flatten(), out[1].flatten(), dim=0)
    assert cos < 0.99
    assert torch.allclose(_encode(lite0, small)[0], out[0], atol=1e-4)  # batch 1 vs 2: float noise only


def _imagenet_categories() -> list[str] | None:
    try:
        from torchvision.models import ResNet18_Weights

        return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    except Exception:  # noqa: BLE001 - optional label names only
        return None


def _real_photo() -> tuple[Image.Image, set[str]] | None:
    """A real photograph shipped with an installed package and ImageNet labels that fit it."""
    if importlib.util.find_spec("skimage") is not None:
        from skimage import data

        return Image.fromarray(data.chelsea()), {"tabby", "tiger cat", "Egyptian cat", "lynx", "tiger"}
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.submodule_search_locations:
        china = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "images" / "china.jpg"
        if china.is_file():
            return Image.open(china).convert("RGB"), {
                "palace",
                "bell cote",
                "monastery",
                "castle",
                "church",
                "pagoda",
            }
    return None


def test_efficientnet_classifies_a_real_photo(lite0: EfficientNetLite0Encoder) -> None:
    photo, cats = _real_photo() or (None, set())
    names = _imagenet_categories()
    if photo is None or names is None:
        pytest.skip("no real photo (skimage/sklearn) or ImageNet label names available")
    with torch.no_grad():
        logits = lite0.classify(lite0.preprocess(photo)[None])
    top3 = {names[i] for i in logits[0].topk(3).indices.tolist()}
    assert top3 & cats, top3


def test_efficientnet_random_init_and_fingerprints(lite0: EfficientNetLite0Encoder, tmp_path: Path) -> None:
    rand_a = EfficientNetLite0Encoder(pretrained=False, seed=1)
    rand_b = EfficientNetLite0Encoder(pretrained=False, seed=1)
    assert rand_a.fingerprint() == rand_b.fingerprint() != lite0.fingerprint()
    assert EfficientNetLite0Encoder(pretrained=False, seed=2).fingerprint() != rand_a.fingerprint()
    from safetensors.torch import save_file

    path = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in lite0.net.state_dict().items()}, str(path))
    assert EfficientNetLite0Encoder(weights=path).fingerprint() == lite0.fingerprint()


def test_efficientnet_bad_weights_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    with pytest.raises(UserError, match="bad.pth"):
        EfficientNetLite0Encoder(weights=bad)
    with pytest.raises(UserError, match="missing.pth"):
        EfficientNetLite0Encoder(weights=tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"x": torch.zeros(1)}, wrong)
    with pytest.raises(UserError, match="wrong.pth"):
        EfficientNetLite0Encoder(weights=wrong)


def test_open_clip_tokens_match_openflamingo_convention(tmp_path: Path) -> None:
    enc = OpenClipEncoder("ViT-S-32", pretrained=None, seed=0)
    pix = enc.preprocess(_picture("circle"))
    assert pix.shape == (3, 224, 224)
    out = _encode(enc, _picture("circle"), _picture("box"))
    assert out.shape == (2, enc.num_tokens, enc.width) == (2, 49, 384)
    pixels = torch.stack([pix, enc.preprocess(_picture("box"))])
    with torch.no_grad():  # what OpenFlamingo's _encode_vision_x takes: vision_encoder(x)[1]
        ref = enc.visual(pixels)[1]
        single = enc.visual(pixels[:1])[1]
    # Same input batch, same shapes, same threads: the same computation, so exact equality is legitimate.
    assert torch.equal(ref, out) and not torch.allclose(out[0], out[1])
    # Batch 1 vs batch 2 picks other kernels (1.7e-6 apart on an AVX-512 Xeon with 2 threads): tolerance.
    assert torch.allclose(single[0], out[0], atol=1e-4)

    path = tmp_path / "clip_visual.pt"
    torch.save({f"visual.{k}": v for k, v in enc.visual.state_dict().items()}, path)
    loaded = OpenClipEncoder("ViT-S-32", pretrained=path, seed=99)
    assert loaded.fingerprint() == enc.fingerprint()
    assert OpenClipEncoder("ViT-S-32", pretrained=None, seed=1).fingerprint() != enc.fingerprint()


def test_open_clip_user_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="ViT-Nope"):
        OpenClipEncoder("ViT-Nope", pretrained=None)
    with pytest.raises(UserError, match="no-such-tag"):
        OpenClipEncoder("ViT-S-32", pretrained="no-such-tag")
    with pytest.raises(UserError, match="absent.safetensors"):
        OpenClipEncoder("ViT-S-32", pretrained=tmp_path / "absent.safetensors")
    import huggingface_hub.constants as hf_constants

    # Offline with an empty cache, as on a machine without the weights; the constant is read
    # at import time, so patch it rather than the environment.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(UserError, match="local checkpoint file"):
        OpenClipEncoder("ViT-B-32", pretrained="openai")


def test_fixed_batches_make_an_image_independent_of_its_neighbours() -> None:
    """``encode_fixed_batches``: an image's features are the same bits whatever is encoded with it.

    Every forward has the same padded shape, so exact equality is legitimate here (other shapes would
    only be equal up to float noise, see the batch 1 vs 2 checks above).
    """
    enc = OpenClipEncoder("ViT-S-32", pretrained=None, seed=0)
    g = torch.Generator().manual_seed(0)
    others = torch.randn(9, 3, 224, 224, generator=g)
    x = enc.preprocess(_picture("circle"))
    calls: list[int] = []

    def encode(p: torch.Tensor) -> torch.Tensor:
        calls.append(p.shape[0])
        return enc(p)

    with torch.no_grad():
        alone = encode_fixed_batches(encode, x[None], 4)[0]
        layouts = [(others[:2], 2), (others[:3], 3), (others[:6], 5), (others[3:9], 0)]  # neighbours, position
        for neighbours, pos in layouts:
            batch = torch.cat([neighbours[:pos], x[None], neighbours[pos:]])
            assert torch.equal(encode_fixed_batches(encode, batch, 4)[pos], alone), (len(batch), pos)
        whole = encode_fixed_batches(encode, others, 4)
        assert whole.shape == (9, enc.num_tokens, enc.width)
        assert torch.equal(whole[5], encode_fixed_batches(encode, others[5:6], 4)[0])
    assert set(calls) == {4}  # every forward had the fixed size, padding included
    with pytest.raises(ValueError, match="batch_size"):
        encode_fixed_batches(encode, others, 0)
