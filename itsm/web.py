"""Web helpers every blueprint uses: the button-only form, a page of results and its number, and the
check that keeps ``next`` redirects on this site."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Request, abort, request
from flask_wtf import FlaskForm
from werkzeug.datastructures import ImmutableMultiDict


class ActionForm(FlaskForm):
    """A button-only form: carries the CSRF token."""

    invalid_message = "The form was missing its security token. Reload the page and try again."


def page_number() -> int:
    """The ``page`` query argument, or a 400 naming the problem."""
    raw = request.args.get("page", "1")
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1 or len(raw) > 9:  # "²".isdigit() is True
        abort(400, "The page number must be a whole number of 1 or more.")
    return int(raw)


@dataclass
class Page:
    items: list
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def safe_next(target: str | None) -> str | None:
    """Only same-site paths: no scheme, no host, no protocol-relative or backslash tricks."""
    if not target:
        return None
    target = target.strip()
    if "\\" in target or any(ord(ch) < 32 for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


class UploadRequest(Request):
    """Closes every temporary file its form parser opened, also when the body was cut off half way
    (Werkzeug closes only the files of a form it finished reading)."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        stream = super()._get_file_stream(total_content_length, content_type, filename, content_length)
        self.__dict__.setdefault("_upload_streams", []).append(stream)
        return stream

    def close(self) -> None:
        try:
            super().close()
        finally:
            for stream in self.__dict__.pop("_upload_streams", []):
                stream.close()

    def forget_body(self) -> None:
        """After the body was refused (too large): the form reads as empty instead of raising again."""
        self.__dict__.update(form=ImmutableMultiDict(), files=ImmutableMultiDict())
