"""Thumbnails of attached images (Pillow): a small WebP the ticket page shows instead of the full image,
so a page with a 20 MB photo stays light on a phone."""

from __future__ import annotations

import io
import logging
import warnings
from typing import BinaryIO

from PIL import Image, ImageOps

BOX = (320, 320)  # shown at 72x54 CSS pixels: enough for screens of 3x density and a hover zoom
MAX_PIXELS = 60_000_000  # larger images (or decompression bombs) get no thumbnail, only the download
log = logging.getLogger(__name__)


def make(stream: BinaryIO) -> bytes | None:
    """The thumbnail's bytes, or None when the image cannot be read (damaged, too large, not an image)."""
    stream.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as image:
                if image.width * image.height > MAX_PIXELS:
                    return None
                image.draft("RGB", BOX)  # JPEG decodes at a fraction of its size: much faster
                image = ImageOps.exif_transpose(image)  # a phone's portrait photo stands upright
                image.thumbnail(BOX)
                if image.mode not in ("RGB", "RGBA"):
                    image = image.convert("RGBA" if "transparency" in image.info or "A" in image.mode else "RGB")
                out = io.BytesIO()
                image.save(out, "WEBP", quality=80, method=4)
                return out.getvalue()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        log.info("no thumbnail: %s", err)
        return None
    finally:
        stream.seek(0)
