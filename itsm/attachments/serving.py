"""A stored file as an HTTP response: streamed chunk by chunk, with ETag (its SHA-256), If-None-Match,
single byte ranges and If-Range, and headers that keep a browser from running anything in it."""

from __future__ import annotations

from flask import Response, current_app, request
from sqlalchemy import select
from werkzeug.wsgi import wrap_file

from itsm.attachments import store
from itsm.attachments.cache import Cache
from itsm.attachments.detect import SAFE_INLINE, served_type
from itsm.attachments.models import Attachment, Blob
from itsm.attachments.names import content_disposition
from itsm.extensions import db

# Nothing in a download may load, run or be framed; an image shown inline needs nothing either.
CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox; frame-ancestors 'none'"


def _headers(sha256: str, filename: str, inline: bool) -> dict:
    return {
        "ETag": f'"{sha256}"',
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(filename, inline=inline),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": CSP,
        "Cross-Origin-Resource-Policy": "same-origin",
        # Only the signed-in user's browser keeps it, and asks again each time (a 304 when unchanged).
        "Cache-Control": "private, no-cache",
    }


def _byte_range(size: int, etag: str) -> tuple[int, int] | None | str:
    """The one range asked for, None for the whole file, or "unsatisfiable"."""
    asked = request.range
    if asked is None or len(asked.ranges) != 1 or asked.units != "bytes":
        return None  # several ranges: the whole file is a valid answer (RFC 9110 14.2)
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range.strip() != f'"{etag}"':
        return None  # it changed since the client's partial copy (or a date we cannot vouch for)
    found = asked.range_for_length(size)
    return found if found is not None else "unsatisfiable"


def response(attachment: Attachment, download: bool = False) -> Response:
    """The file itself; a safe image inline unless ``download``."""
    inline = attachment.content_type in SAFE_INLINE and not download
    return serve_blob(attachment.sha256, attachment.size, attachment.content_type, attachment.filename, inline)


def thumbnail_response(attachment: Attachment) -> Response | None:
    """The image's thumbnail (WebP, inline), or None when it has none."""
    blob = attachment.thumbnail
    if blob is None:
        return None
    name = attachment.filename.rpartition(".")[0] or attachment.filename
    return serve_blob(blob.sha256, blob.size, "image/webp", f"{name}.thumbnail.webp", inline=True)


def serve_blob(sha256: str, size: int, content_type: str, filename: str, inline: bool) -> Response:
    headers = _headers(sha256, filename, inline)
    if request.if_none_match.contains(sha256) or request.if_none_match.star_tag:
        return Response(status=304, headers=headers)
    wanted = _byte_range(size, sha256)
    if wanted == "unsatisfiable":
        headers["Content-Range"] = f"bytes */{size}"
        return Response(status=416, headers=headers)
    start, stop, status = (0, size, 200) if wanted is None else (*wanted, 206)
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    headers["Content-Length"] = str(stop - start)
    return current_app.response_class(_body(sha256, size, start, stop), status=status, headers=headers,
                                      content_type=served_type(content_type), direct_passthrough=True)


def _cache() -> Cache:
    config = current_app.config
    return Cache(config["ATTACHMENT_CACHE_DIR"], config["ATTACHMENT_CACHE_MB"] * 1048576)


def _body(sha256: str, size: int, start: int, stop: int):
    """From this host's copy when it has one (the whole file through the server's sendfile), else from the
    database, keeping a copy of a whole file as it goes. Not stream_with_context: the chunks are read on
    their own short connections, off the request."""
    cache = _cache()
    handle = cache.open(sha256, size)
    if handle is not None:
        handle.seek(start)
        if (start, stop) == (0, size):
            return wrap_file(request.environ, handle)  # gunicorn: sendfile(2), as for static files
        return _file_range(handle, stop - start)
    chunk_size = db.session.scalar(select(Blob.chunk_size).where(Blob.sha256 == sha256))
    chunks = store.read(sha256, start, stop, chunk_size, engine=db.engine)
    return cache.filling(sha256, size, chunks) if (start, stop) == (0, size) else chunks


def _file_range(handle, length: int):
    with handle:
        while length > 0:
            data = handle.read(min(length, 1 << 20))
            if not data:
                return
            length -= len(data)
            yield data
