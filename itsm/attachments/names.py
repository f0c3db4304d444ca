"""Attachment file names: what a page shows, and what Content-Disposition says (RFC 6266, RFC 5987).

A name is never used as a path here (files live in the database), so cleaning it is about what a
reader sees: no directories, no control or direction-override characters, a bounded length."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

MAX_LENGTH = 255
FALLBACK = "attachment"
# Control, format (RTL overrides, zero-width), surrogate, private-use, unassigned, line and paragraph separators.
_DROPPED = frozenset(("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))
_MAX_SUFFIX = 16  # an extension longer than this is not kept apart when a name is shortened


def clean_name(raw: str | None) -> str:
    """The name a file is listed and downloaded under."""
    name = unicodedata.normalize("NFC", raw or "").replace("\\", "/").rsplit("/", 1)[-1]  # C:\...\a.txt too
    name = "".join(" " if ch.isspace() else ch for ch in name)  # tabs and line breaks read as spaces
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _DROPPED)
    name = " ".join(name.split()).rstrip(" .")  # trailing dots and spaces mean nothing on Windows
    if name in ("", ".", ".."):
        return FALLBACK
    if len(name) > MAX_LENGTH:
        stem, dot, suffix = name.rpartition(".")
        if dot and stem and len(suffix) <= _MAX_SUFFIX:
            name = stem[:MAX_LENGTH - len(suffix) - 1].rstrip(" .") + "." + suffix
        else:
            name = name[:MAX_LENGTH]
    return name


def _ascii_fallback(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    # Quotes and backslashes would end or escape the quoted string; some browsers decode %XX in it.
    folded = "".join("_" if ch in '"\\%' or not ch.isprintable() else ch for ch in folded).strip()
    stem, dot, suffix = folded.rpartition(".")
    if not dot:
        stem, suffix = folded, ""
    if not stem.strip("._ "):  # nothing readable is left of the name itself (e.g. it was all CJK)
        return FALLBACK + ("." + suffix if suffix.strip() else "")
    return folded


def content_disposition(name: str, inline: bool = False) -> str:
    """The header value: an ASCII ``filename`` every client reads, and ``filename*`` in UTF-8 when the
    name is not plain ASCII (RFC 6266 section 4.3)."""
    kind = "inline" if inline else "attachment"
    fallback = _ascii_fallback(name)
    value = f'{kind}; filename="{fallback}"'
    if fallback != name:
        value += "; filename*=UTF-8''" + quote(name, safe="")
    return value
