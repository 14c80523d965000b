"""Image loading that never surprises: every PIL mode becomes RGB, bad files become one clear error.

Policy (kept in one place so adapters and encoders agree):

* Transparency (RGBA, LA, PA, P/L/RGB with a ``transparency`` key) is composited on WHITE, the
  convention of web images whose transparent background a browser shows on a white page.
* 16-bit images (``I;16*``) are mapped to 8 bits by a fixed ``/257``; 32-bit integer images (``I``)
  are kept when all values fit in 8 bits, divided by 257 when they fit in 16 bits (a 16-bit PNG),
  else scaled by their maximum; float images in ``[0, 1]`` are scaled by 255,
  floats in ``[0, 255]`` are kept, anything else is min-max normalised.
* CMYK, YCbCr, 1-bit, grayscale and palette images go through PIL's own ``convert("RGB")``.
* Memory is bounded: an image whose decoded size would exceed ``max_pixels`` (default
  :data:`DEFAULT_MAX_PIXELS`, override with ``$FLAMINGO_EVAL_MAX_IMAGE_PIXELS``) is decoded at a reduced
  scale when it is a JPEG (``Image.draft`` picks the DCT scale 1/2, 1/4 or 1/8, so the full-size
  pixels are never materialised) and refused with a :class:`UserError` otherwise.
* PIL's decompression-bomb guard is set deliberately to :data:`HEADER_PIXEL_LIMIT`: it only looks
  at the header, and we need to open huge JPEG headers to draft them down. Headers above that limit
  are refused; our own ``max_pixels`` check bounds what is actually decoded.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from flamingo_eval.errors import UserError

__all__ = ["DEFAULT_MAX_PIXELS", "HEADER_PIXEL_LIMIT", "content_hash", "load_image", "max_image_pixels"]

DEFAULT_MAX_PIXELS = 64_000_000
"""Largest image (width x height) decoded at full scale: 64 MP, about 192 MB as RGB."""

HEADER_PIXEL_LIMIT = 1 << 32
"""Largest image a header may announce (PIL refuses above ``2 * Image.MAX_IMAGE_PIXELS``)."""

MAX_PIXELS_ENV = "FLAMINGO_EVAL_MAX_IMAGE_PIXELS"

# PIL raises DecompressionBombError at twice this value; see the module docstring for why.
Image.MAX_IMAGE_PIXELS = HEADER_PIXEL_LIMIT // 2

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_HIGH_DEPTH_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def max_image_pixels() -> int:
    """The decoded-pixel limit in force: ``$FLAMINGO_EVAL_MAX_IMAGE_PIXELS`` or the default."""
    raw = os.environ.get(MAX_PIXELS_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        raise UserError(
            f"${MAX_PIXELS_ENV}={raw!r} is not an integer; set it to a pixel count like 64000000"
        ) from None
    if value <= 0:
        raise UserError(f"${MAX_PIXELS_ENV}={raw!r} must be positive; set it to a pixel count like 64000000")
    return value


def load_image(path: str | os.PathLike[str], max_pixels: int | None = None) -> Image.Image:
    """Load any image file as an 8-bit RGB ``PIL.Image`` (fully decoded, file closed).

    Args:
        path: The image file.
        max_pixels: Decoded-size bound in pixels; ``None`` uses :func:`max_image_pixels`.

    Returns:
        An ``RGB`` image. Large JPEGs may come back at 1/2, 1/4 or 1/8 of their size.

    Raises:
        UserError: Missing, empty, truncated, non-image or over-large file (the message names it).
    """
    p = Path(path)
    limit = max_image_pixels() if max_pixels is None else max_pixels
    _require_file(p)
    if p.stat().st_size == 0:
        raise UserError(f"image {p} is an empty (zero-byte) file; delete it and re-download the dataset")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                _bound_size(im, p, limit)
                im.load()
                return _to_rgb(im)
    except UserError:
        raise
    except Image.DecompressionBombError:
        raise UserError(
            f"image {p} announces more than {HEADER_PIXEL_LIMIT} pixels; it is refused as a decompression bomb"
        ) from None
    except UnidentifiedImageError:
        raise UserError(f"{p} is not an image PIL can read; remove it or fix the dataset file list") from None
    except PermissionError:
        raise UserError(f"image {p} is not readable (permission denied); fix its permissions") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise UserError(
            f"image {p} is corrupt or truncated ({err}); delete it and re-download the dataset"
        ) from None


def _require_file(p: Path) -> None:
    """A UserError naming ``p`` and what it is instead, unless it is a regular file (or a link to one)."""
    if p.is_file():
        return
    if p.is_dir():
        what = "is a directory, not an image file"
    elif p.is_symlink():
        what = "is a broken symbolic link (its target is missing, or the links form a loop)"
    elif p.exists():
        what = "is not a regular file (a device, socket or pipe)"
    else:
        what = "does not exist"
    raise UserError(f"image {p} {what}; check the dataset path (`flamingo-eval data check` shows the layout)")


def _bound_size(im: Image.Image, path: Path, limit: int) -> None:
    """Make the pending decode fit in ``limit`` pixels (JPEG draft) or refuse the image."""
    w, h = im.size
    if w * h <= limit:
        return
    if im.format == "JPEG":
        scale = 1
        while scale < 8 and (w // scale) * (h // scale) > limit:
            scale *= 2
        # draft picks the largest DCT scale whose result is still >= the requested size.
        im.draft("RGB" if im.mode not in ("L", "CMYK") else im.mode, (max(1, w // scale), max(1, h // scale)))
        if im.size[0] * im.size[1] <= limit:
            return
    at = " even at 1/8 JPEG scale" if im.format == "JPEG" else ""
    raise UserError(
        f"image {path} is {w}x{h} pixels{at}, over the {limit}-pixel limit; "
        f"downscale the file or raise ${MAX_PIXELS_ENV}"
    )


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert a decoded image of any mode to 8-bit RGB following the module policy."""
    if im.mode in _HIGH_DEPTH_MODES:
        return Image.fromarray(_to_uint8(np.asarray(im), im.mode)).convert("RGB")
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if im.mode == "RGB":
        return im.copy()
    return im.convert("RGB")


def _to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Map a 16/32-bit integer or float array of PIL ``mode`` to uint8 (see the module docstring)."""
    if arr.size == 0:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(finite.min()), float(finite.max())
        if lo >= 0.0 and hi <= 1.0:
            scaled = finite * 255.0
        elif lo >= 0.0 and hi <= 255.0:
            scaled = finite
        else:
            scaled = (finite - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(finite)
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    wide = arr.astype(np.int64)
    lo, hi = int(wide.min()), int(wide.max())
    if mode == "I" and lo >= 0 and hi <= 255:
        return wide.astype(np.uint8)  # 8-bit data in a 32-bit container (e.g. after a TIFF round trip)
    if lo >= 0 and hi <= 65535:
        return ((wide * 255 + 32767) // 65535).astype(np.uint8)  # the fixed 16 -> 8 bit map, rounded
    wide = np.clip(wide, 0, None)
    return (wide * 255 // max(hi, 1)).astype(np.uint8)


def content_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file's bytes, cached by (resolved path, mtime, size).

    Args:
        path: The file.

    Returns:
        64 lowercase hex characters.

    Raises:
        UserError: The path is not a readable regular file (missing, a directory, a broken link, ...).
    """
    p = Path(path)
    _require_file(p)
    st = p.stat()
    try:
        return _hash_file(str(p.resolve()), st.st_mtime_ns, st.st_size)
    except OSError as e:
        raise UserError(f"image {p} is not readable ({e.strerror or e}); fix its permissions") from None


@lru_cache(maxsize=1 << 16)
def _hash_file(path: str, mtime_ns: int, size: int) -> str:
    """Hash ``path``; mtime and size are part of the cache key so an edited file is re-hashed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
