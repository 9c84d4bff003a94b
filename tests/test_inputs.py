"""Bad input gets a clear InputError, never a crash or a wrong picture."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pipeline import InputError, RenderOptions, load_mask, load_photo, load_texture


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def gradient(w: int = 400, h: int = 300) -> np.ndarray:
    x = np.linspace(0, 255, w, dtype=np.float32)
    y = np.linspace(0, 255, h, dtype=np.float32)
    return np.stack([np.broadcast_to(x, (h, w)), np.broadcast_to(y[:, None], (h, w)),
                     np.full((h, w), 90.0)], -1).astype(np.uint8)


def test_rgb_photo_roundtrips():
    arr = gradient()
    out = load_photo(encode(Image.fromarray(arr)))
    assert out.dtype == np.uint8 and out.shape == (300, 400, 3)
    assert np.array_equal(out, arr)


@pytest.mark.parametrize("data, reason", [
    (b"", "not a readable image"),
    (b"GIF89a" + b"\x00" * 20, "not a readable image"),
    (b"hello, I am a text file", "not a readable image"),
])
def test_corrupt_files_are_refused(data, reason):
    with pytest.raises(InputError, match=reason):
        load_photo(data)


def test_truncated_jpeg_is_refused():
    data = encode(Image.fromarray(gradient()), "JPEG")
    with pytest.raises(InputError, match="photo: not a readable image"):
        load_photo(data[: len(data) // 2])


def test_tiny_photo_is_refused():
    with pytest.raises(InputError, match=r"200x120 is too small"):
        load_photo(encode(Image.fromarray(gradient(200, 120))))


def test_pixel_budget_is_checked_before_decoding():
    # A PNG header that claims 60000 x 60000 pixels (a decompression bomb) with almost no data.
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    def bomb(side: int) -> bytes:
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b""))

    before = Image.MAX_IMAGE_PIXELS
    # over our budget (40 MP) but under Pillow's own refusal: our header check answers, nothing is decoded
    with pytest.raises(InputError, match="8000x8000 is 64.0 megapixels, over the limit of 40.0"):
        load_photo(bomb(8000))
    # far over both (3600 MP): Pillow refuses in Image.open, answered the same way
    with pytest.raises(InputError, match="over the limit of 40.0 megapixels"):
        load_photo(bomb(60000))
    assert Image.MAX_IMAGE_PIXELS == before  # no process-wide setting changed on the way
    with pytest.raises(InputError, match="over the limit of 0.1"):
        load_photo(encode(Image.fromarray(gradient())), max_pixels=100_000)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "1"])
def test_every_colour_mode_becomes_rgb(mode):
    base = Image.fromarray(gradient())
    if mode == "I;16":  # a 16-bit grey PNG
        img = Image.fromarray(np.asarray(base.convert("L"), np.uint16) * 257)
        assert img.mode.startswith("I;16")
    else:
        img = base.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = load_photo(encode(img, fmt))
    assert out.shape == (300, 400, 3) and out.dtype == np.uint8
    if mode in ("L", "I;16"):
        # Grey stays grey, and 16-bit is scaled, not clipped: the brightest grey is still near white.
        assert np.array_equal(out[..., 0], out[..., 1])
        assert abs(int(out.max()) - int(np.asarray(base.convert("L")).max())) <= 1


def test_transparent_pixels_become_white():
    rgba = np.zeros((300, 300, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:150, :, 3] = 255
    out = load_photo(encode(Image.fromarray(rgba, "RGBA")))
    assert tuple(out[10, 10]) == (200, 0, 0)
    assert tuple(out[250, 10]) == (255, 255, 255)


def test_exif_orientation_is_honoured():
    arr = gradient(400, 300)
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = load_photo(encode(img, "JPEG", exif=exif, quality=95))
    assert out.shape == (400, 300, 3)
    # Red grows left to right in the stored image: upright, the stored left column is the top row
    # and the stored right column the bottom row.
    assert out[0, :, 0].mean() < 10 and out[-1, :, 0].mean() > 245


def test_swatch_and_colour():
    assert load_texture("#FF8000").colour == (255, 128, 0)
    assert load_texture("#00aa11").colour == (0, 170, 17)
    with pytest.raises(InputError, match="#RRGGBB"):
        load_texture("#12345")
    with pytest.raises(InputError, match="swatch: 12x40 is too small"):
        load_texture(encode(Image.new("RGB", (12, 40))))
    assert load_texture(encode(Image.new("RGB", (16, 16)))).image.shape == (16, 16, 3)


def test_mask_checks():
    white = Image.new("L", (400, 300), 255)
    assert load_mask(encode(white), (300, 400)).all()
    with pytest.raises(InputError, match="does not match the photo's 500x300"):
        load_mask(encode(white), (300, 500))
    with pytest.raises(InputError, match="paints nothing"):
        load_mask(encode(Image.new("L", (400, 300), 0)), (300, 400))
    # An alpha mask: opaque = paint, whatever the colour.
    rgba = np.zeros((300, 400, 4), np.uint8)
    rgba[:100, :, 3] = 255
    m = load_mask(encode(Image.fromarray(rgba, "RGBA")), (300, 400))
    assert m[:100].all() and not m[100:].any()


@pytest.mark.parametrize("raw, field", [
    ({"real_world_scale": 0}, "options.real_world_scale"),
    ({"real_world_scale": "24"}, "options.real_world_scale"),
    ({"enable_refinement": "yes"}, "options.enable_refinement"),
    ({"refinement_seed": -1}, "options.refinement_seed"),
    ({"refinement_seed": 1.5}, "options.refinement_seed"),
    ({"stage_timeout_seconds": 0}, "options.stage_timeout_seconds"),
    ({"colour": "red"}, "options.colour"),
])
def test_bad_options_name_the_field(raw, field):
    with pytest.raises(InputError) as info:
        RenderOptions.from_mapping(raw)
    assert field in info.value.details


def test_option_defaults():
    opts = RenderOptions.from_mapping({})
    assert opts == RenderOptions(24.0, False, 42, None)
    assert RenderOptions.from_mapping({"real_world_scale": 8, "stage_timeout_seconds": 2}).real_world_scale == 8.0
