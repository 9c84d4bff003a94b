"""Decoding and validating the pipeline's inputs: photo, swatch or paint colour, client mask.

Everything that comes in as bytes or a path becomes a plain uint8 RGB array here, or an InputError
that says exactly what is wrong. Stages only ever see clean arrays.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps

from .errors import InputError

Source = Union[bytes, str, Path, np.ndarray, Image.Image]

MIN_PHOTO_SIDE = 256
MIN_SWATCH_SIDE = 16
DEFAULT_MAX_PIXELS = 40_000_000  # ~ a 7700x5200 photo; the config may lower or raise it
_COLOUR = re.compile(r"^#?([0-9a-fA-F]{6})$")


def _open(source: Source, what: str, max_pixels: int) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return Image.fromarray(source)
    try:
        fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else open(source, "rb")
    except OSError as exc:
        raise InputError(f"{what}: cannot read file ({exc.strerror})") from exc
    try:
        with warnings.catch_warnings():
            # Our own budget is checked from the header, before any pixel is decoded. Pillow's process-wide bomb
            # guard is left as it is (it warns above its MAX_IMAGE_PIXELS and refuses above twice that): the
            # warning is ours to judge, its refusal answers like ours.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp)
            w, h = img.size
            if w * h > max_pixels:
                raise InputError(f"{what}: {w}x{h} is {w * h / 1e6:.1f} megapixels, over the limit of "
                                 f"{max_pixels / 1e6:.1f}")
            img.load()
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        limit = min(max_pixels, 2 * Image.MAX_IMAGE_PIXELS) if Image.MAX_IMAGE_PIXELS else max_pixels
        raise InputError(f"{what}: over the limit of {limit / 1e6:.1f} megapixels ({exc})") from exc
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise InputError(f"{what}: not a readable image ({type(exc).__name__}: {exc})") from exc
    return img


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Any mode (L, LA, P, CMYK, I;16, RGBA, ...) to uint8 RGB; transparency is composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def upright_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) of an opened image once its EXIF orientation is applied, from the header alone."""
    w, h = img.size
    return (h, w) if img.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)  # turned by 90 degrees


def load_photo(source: Source, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = MIN_PHOTO_SIDE) -> np.ndarray:
    """The house photo as uint8 RGB (H, W, 3), upright (EXIF orientation applied)."""
    img = ImageOps.exif_transpose(_open(source, "photo", max_pixels))
    w, h = img.size
    if min(w, h) < min_side:
        raise InputError(f"photo: {w}x{h} is too small; the shorter side must be at least {min_side} px")
    return _to_rgb(img)


@dataclass(frozen=True)
class Texture:
    """Either a swatch image (tiled onto the wall) or a flat paint colour (the photo's shading is kept)."""

    image: np.ndarray | None = None
    colour: tuple[int, int, int] | None = None

    @property
    def is_colour(self) -> bool:
        return self.colour is not None

    def describe(self) -> str:
        if self.colour is not None:
            return "paint #%02X%02X%02X" % self.colour
        h, w = self.image.shape[:2]
        return f"swatch {w}x{h}"


def parse_colour(value: str) -> tuple[int, int, int] | None:
    m = _COLOUR.match(value.strip()) if isinstance(value, str) else None
    if not m:
        return None
    hexa = m.group(1)
    return (int(hexa[0:2], 16), int(hexa[2:4], 16), int(hexa[4:6], 16))


def load_texture(source: Union[Source, Texture], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Texture:
    """A swatch image, or a paint colour written `#RRGGBB`."""
    if isinstance(source, Texture):
        return source
    if isinstance(source, str) and source.strip().startswith("#"):
        colour = parse_colour(source)
        if colour is None:
            raise InputError(f"texture: '{source}' is not a colour; write it as #RRGGBB")
        return Texture(colour=colour)
    img = ImageOps.exif_transpose(_open(source, "swatch", max_pixels))
    w, h = img.size
    if min(w, h) < MIN_SWATCH_SIDE:
        raise InputError(f"swatch: {w}x{h} is too small; both sides must be at least {MIN_SWATCH_SIDE} px")
    return Texture(image=_to_rgb(img))


def load_mask(source: Source, shape: tuple[int, int], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A client paint mask: white (or any non-zero, or opaque alpha) = paint. Must match the photo's size."""
    img = _open(source, "mask", max_pixels)
    # A client mask comes from the same upright photo: apply EXIF orientation the same way.
    img = ImageOps.exif_transpose(img)
    h, w = shape
    if img.size != (w, h):
        raise InputError(f"mask: {img.size[0]}x{img.size[1]} does not match the photo's {w}x{h}")
    if img.mode in ("RGBA", "LA"):
        alpha = np.asarray(img.getchannel("A"))
        gray = np.asarray(img.convert("L"))
        mask = (alpha >= 128) & (gray >= 128) if alpha.min() == 255 else alpha >= 128
    else:
        mask = np.asarray(img.convert("L")) >= 128
    if not mask.any():
        raise InputError("mask: it paints nothing (no pixel is white)")
    return mask


def encode_png(image: np.ndarray) -> bytes:
    """RGB (H, W, 3) or grey (H, W) uint8 -> PNG bytes (the results and the masks a job keeps)."""
    import cv2

    ok, data = cv2.imencode(".png", image[:, :, ::-1] if image.ndim == 3 else image,
                            [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return data.tobytes()
