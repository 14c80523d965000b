"""media.load_image / content_hash on edge-case files generated in tmp_path."""

from __future__ import annotations

import io
import os
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from flamingo_eval.errors import UserError
from flamingo_eval.media import content_hash, load_image


def _save(img: Image.Image, path: Path, **kw: Any) -> Path:
    img.save(path, **kw)
    return path


def _gradient(size: int = 16) -> np.ndarray:
    return np.arange(size * size, dtype=np.float64).reshape(size, size) / (size * size - 1)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("gray.png", lambda: Image.fromarray((_gradient() * 255).astype(np.uint8), "L")),
        ("bilevel.png", lambda: Image.new("1", (16, 16), 1)),
        ("cmyk.jpg", lambda: Image.new("CMYK", (16, 16), (0, 255, 255, 0))),
        ("cmyk.tif", lambda: Image.new("CMYK", (16, 16), (255, 0, 0, 0))),
        (
            "palette.png",
            lambda: Image.new("RGB", (16, 16), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE),
        ),
        ("rgb.jpg", lambda: Image.new("RGB", (16, 16), (200, 10, 10))),
        ("ycbcr.jpg", lambda: Image.new("YCbCr", (16, 16), (128, 100, 150))),
    ],
)
def test_modes_load_as_rgb(tmp_path: Path, name: str, make) -> None:
    img = load_image(_save(make(), tmp_path / name))
    assert img.mode == "RGB" and img.size == (16, 16)


def test_cmyk_colour_is_kept(tmp_path: Path) -> None:
    img = load_image(_save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), tmp_path / "red.tif"))
    assert img.getpixel((0, 0)) == (255, 0, 0)


def test_rgba_and_la_composite_on_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    out = load_image(_save(rgba, tmp_path / "rgba.png"))
    assert out.getpixel((1, 1)) == (255, 255, 255) and out.getpixel((0, 0)) == (255, 0, 0)
    half = load_image(_save(Image.new("LA", (4, 4), (0, 128)), tmp_path / "la.png"))
    assert half.mode == "RGB" and abs(int(np.asarray(half)[0, 0, 0]) - 127) <= 1


def test_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    img.putpixel((0, 0), 1)
    path = _save(img, tmp_path / "ptrans.png", transparency=0)
    out = load_image(path)
    assert out.getpixel((1, 1)) == (255, 255, 255) and out.getpixel((0, 0)) == (0, 255, 0)
    gif = _save(img, tmp_path / "ptrans.gif", transparency=0)
    assert load_image(gif).getpixel((1, 1)) == (255, 255, 255)


def test_16_bit_scaled_not_clipped(tmp_path: Path) -> None:
    arr = (_gradient() * 65535).astype(np.uint16)
    path = _save(Image.fromarray(arr), tmp_path / "g16.png")
    assert Image.open(path).mode in {"I;16", "I"}
    out = np.asarray(load_image(path))[..., 0]
    assert out.min() == 0 and out.max() == 255 and 120 <= out[8, 0] <= 135  # mid grey, not white


def test_32_bit_int_and_float(tmp_path: Path) -> None:
    i32 = Image.fromarray((_gradient() * 65535).astype(np.int32), "I")
    out = np.asarray(load_image(_save(i32, tmp_path / "i32.tif")))
    assert out.max() == 255 and out.min() == 0
    f01 = Image.fromarray(_gradient().astype(np.float32), "F")
    out = np.asarray(load_image(_save(f01, tmp_path / "f01.tif")))
    assert out.max() == 255 and out.min() == 0 and out.shape == (16, 16, 3)
    fwide = Image.fromarray((_gradient() * 1e6 - 5).astype(np.float32), "F")
    assert np.asarray(load_image(_save(fwide, tmp_path / "fwide.tif"))).max() == 255


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nope.jpg"):
        load_image(tmp_path / "nope.jpg")


def test_zero_byte_file(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(UserError, match="empty.png"):
        load_image(tmp_path / "empty.png")


def test_truncated_jpeg(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(UserError, match="cut.jpg"):
        load_image(tmp_path / "cut.jpg")


def test_non_image_and_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("this is not a picture\n")
    with pytest.raises(UserError, match="notes.jpg"):
        load_image(tmp_path / "notes.jpg")
    (tmp_path / "adir").mkdir()
    with pytest.raises(UserError, match="adir"):
        load_image(tmp_path / "adir")


def _broken_link(tmp_path: Path) -> Path:
    (tmp_path / "a.jpg").symlink_to(tmp_path / "gone.jpg")
    return tmp_path / "a.jpg"


def _link_loop(tmp_path: Path) -> Path:
    (tmp_path / "a.jpg").symlink_to(tmp_path / "b.jpg")
    (tmp_path / "b.jpg").symlink_to(tmp_path / "a.jpg")
    return tmp_path / "a.jpg"


def _fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "a.jpg")
    return tmp_path / "a.jpg"


def _directory(tmp_path: Path) -> Path:
    (tmp_path / "a.jpg").mkdir()
    return tmp_path / "a.jpg"


@pytest.mark.parametrize("make,what", [
    (_directory, "is a directory, not an image file"),
    (_broken_link, "is a broken symbolic link"),
    (_link_loop, "is a broken symbolic link"),
    (_fifo, "is not a regular file"),
], ids=["directory", "broken-link", "link-loop", "fifo"])
def test_not_a_regular_file_is_named_by_load_and_hash(tmp_path: Path, make, what: str) -> None:
    """Both the content hash (the latent-cache key, computed first) and the loader give one UserError."""
    path = make(tmp_path)
    for fn in (load_image, content_hash):
        with pytest.raises(UserError, match=f"image {path} {what}"):
            fn(path)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_unreadable_image(tmp_path: Path) -> None:
    path = tmp_path / "locked.png"
    Image.new("RGB", (4, 4)).save(path)
    path.chmod(0)
    for fn in (load_image, content_hash):
        with pytest.raises(UserError, match="(?i)permission denied"):
            fn(path)


def _giant_jpeg(path: Path, width: int, height: int) -> Path:
    """A valid baseline JPEG announcing width x height built from a 16x16-block-aligned tiny one.

    The entropy-coded data stays that of the small image, so the decoder hits its end early and
    PIL fills the rest; only the header's SOF0 dimensions are patched.
    """
    buf = io.BytesIO()
    Image.new("L", (16, 16), 128).save(buf, "JPEG", quality=50)
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def test_huge_jpeg_is_drafted_down(tmp_path: Path) -> None:
    path = _giant_jpeg(tmp_path / "huge.jpg", 20000, 20000)
    assert Image.open(path).size == (20000, 20000)
    try:
        img = load_image(path, max_pixels=30_000_000)
    except UserError as err:  # documented alternative: a clear refusal naming the file
        assert "huge.jpg" in str(err)
        return
    assert img.mode == "RGB" and img.size[0] * img.size[1] <= 30_000_000 and img.size == (5000, 5000)


def test_huge_non_jpeg_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(Image.new("RGB", (100, 100)), tmp_path / "big.png")
    with pytest.raises(UserError, match="big.png.*FLAMINGO_EVAL_MAX_IMAGE_PIXELS"):
        load_image(path, max_pixels=5000)
    monkeypatch.setenv("FLAMINGO_EVAL_MAX_IMAGE_PIXELS", "5000")
    with pytest.raises(UserError, match="big.png"):
        load_image(path)
    monkeypatch.setenv("FLAMINGO_EVAL_MAX_IMAGE_PIXELS", "20000")
    assert load_image(path).size == (100, 100)


def test_content_hash_cached_and_refreshed(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"abc")
    first = content_hash(path)
    assert first == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert content_hash(str(path)) == first
    path.write_bytes(b"abcd")
    later = time.time() + 5
    os.utime(path, (later, later))
    assert content_hash(path) != first
    with pytest.raises(UserError, match="gone.bin"):
        content_hash(tmp_path / "gone.bin")
