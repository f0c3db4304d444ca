"""What a file is, judged by its first bytes (filetype's signatures), never by its name."""

from __future__ import annotations

import filetype

# Raster images a browser may show inline: no scripts, no external references (SVG is never one).
SAFE_INLINE = frozenset(("image/png", "image/jpeg", "image/gif", "image/webp"))
HEAD_BYTES = 8192  # filetype needs 261; the text check reads more
TEXT = "text/plain"
BINARY = "application/octet-stream"


def looks_like_text(head: bytes) -> bool:
    """UTF-8 without NUL bytes (a character cut at the end of ``head`` is allowed)."""
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start >= len(head) - 3 and err.reason == "unexpected end of data"
    return True


def detect(head: bytes) -> str:
    """The file's media type from its start. Text of any kind (HTML, SVG, XML, scripts) is text/plain:
    it is only ever downloaded, so there is nothing to gain from telling them apart."""
    kind = filetype.guess(head) if head else None
    if kind is not None:
        return kind.mime
    return TEXT if head and looks_like_text(head) else BINARY


def served_type(content_type: str) -> str:
    return "text/plain; charset=utf-8" if content_type == TEXT else content_type
