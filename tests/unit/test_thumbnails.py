"""Thumbnails of attached images: small, upright, and none at all for what cannot be read safely."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

from itsm.attachments import thumbnails


def encoded(image: Image.Image, fmt: str, **options) -> io.BytesIO:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    out.seek(0)
    return out


def test_a_large_photo_becomes_a_small_webp():
    made = thumbnails.make(encoded(Image.new("RGB", (4000, 3000), (200, 30, 30)), "JPEG", quality=90))
    image = Image.open(io.BytesIO(made))
    assert image.format == "WEBP" and image.size == (320, 240) and len(made) < 10_000


def test_a_portrait_photo_stands_upright():
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotated 90 degrees clockwise
    stream = encoded(Image.new("RGB", (400, 200)), "JPEG", exif=exif)
    assert Image.open(io.BytesIO(thumbnails.make(stream))).size == (160, 320)


def test_transparency_and_palettes_survive():
    made = thumbnails.make(encoded(Image.new("RGBA", (64, 64), (0, 0, 0, 0)), "PNG"))
    assert Image.open(io.BytesIO(made)).mode == "RGBA"
    assert thumbnails.make(encoded(Image.new("P", (50, 50)), "GIF")) is not None


def test_a_damaged_image_gets_no_thumbnail():
    assert thumbnails.make(io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"\x00" * 500)) is None


def test_a_decompression_bomb_gets_no_thumbnail():
    # A valid PNG header claiming 100,000 x 100,000 pixels, with almost no data behind it.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    stream = io.BytesIO(b"\x89PNG\r\n\x1a\n" + chunk)
    assert thumbnails.make(stream) is None
    assert stream.tell() == 0  # left where the upload's next reader expects it
