"""Jinja filters and globals used by every page."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from flask import Flask, current_app, request

from itsm.tickets.models import CATCH_UP, OPEN_POLICIES, PRIORITIES


def local_dt(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Show an aware datetime in the configured TIME_ZONE."""
    if value is None:
        return ""
    return value.astimezone(ZoneInfo(current_app.config["TIME_ZONE"])).strftime(fmt)


def in_zone(value: datetime | None, tz: str, fmt: str = "%Y-%m-%d %H:%M %Z") -> str:
    """Show an aware datetime in a given IANA zone (a recurring ticket's own)."""
    if value is None:
        return ""
    return value.astimezone(ZoneInfo(tz)).strftime(fmt)


def url_with(_path: str | None = None, **params) -> str:
    """The current URL (or ``_path`` with the current query) with some query parameters replaced (None removes one)."""
    args = request.args.to_dict()
    for key, value in params.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = value
    query = urlencode(args)
    return (_path or request.path) + ("?" + query if query else "")


def register(app: Flask) -> None:
    app.jinja_env.filters["local_dt"] = local_dt
    app.jinja_env.filters["in_zone"] = in_zone
    app.jinja_env.globals.update(url_with=url_with, PRIORITIES=PRIORITIES, OPEN_POLICIES=OPEN_POLICIES,
                                 CATCH_UP=CATCH_UP)
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True

    @app.context_processor
    def inject_settings():
        return {"time_zone": app.config["TIME_ZONE"]}
