"""Jinja filters and globals used by every page."""

from __future__ import annotations

from datetime import datetime, tzinfo
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from flask import Flask, current_app, g, get_template_attribute, has_request_context, request
from jinja2 import pass_context

from itsm.attachments.detect import SAFE_INLINE
from itsm.tickets.models import CATCH_UP, OPEN_POLICIES, PRIORITIES
from itsm.zones import is_known_zone

# The one way a moment is written, on pages, in flashes and in emails. Today's drop the date ("today 09:00");
# every other carries its year.
DATE_TIME = "%Y-%m-%d %H:%M"
TODAY = "today %H:%M"
# Set by the outbox when it renders an email: the recipient's zone. An email is read later, so it never
# says "today", and it names the zone next to each time (there is no footer to name it once).
EMAIL_ZONE = "email_time_zone"


def viewer_zone() -> str:
    """The zone times are shown in for whoever is looking: their profile's choice, else TIME_ZONE."""
    # Only a user already loaded (every view's is, before it runs): the maintenance page and the health
    # endpoints must not read the database to learn whose zone it is.
    user = g.get("_login_user") if has_request_context() else None
    if user is not None and user.is_authenticated and is_known_zone(getattr(user, "time_zone", None)):
        return user.time_zone
    return current_app.config["TIME_ZONE"]


def _zone_name(zone: tzinfo) -> str:
    return getattr(zone, "key", None) or zone.tzname(None) or "UTC"


def show_time(value: datetime | None, zone: str | tzinfo | None = None, *, label: bool = False,
              relative: bool = True) -> str:
    """``value`` in ``zone`` (default: the viewer's), in the one format; ``label`` names the zone after it,
    ``relative`` writes today's as "today HH:MM"."""
    if value is None:
        return ""
    if zone is None:
        zone = viewer_zone()
    tz = ZoneInfo(zone) if isinstance(zone, str) else zone
    local = value.astimezone(tz)
    fmt = TODAY if relative and local.date() == datetime.now(tz).date() else DATE_TIME
    text = local.strftime(fmt)
    return f"{text} {_zone_name(tz)}" if label else text


@pass_context
def local_dt(context, value: datetime | None) -> str:
    """A moment in the viewer's zone (the page's footer names it), or the recipient's in an email."""
    email_zone = context.get(EMAIL_ZONE)
    if email_zone:
        return show_time(value, email_zone, label=True, relative=False)
    return show_time(value)


@pass_context
def in_zone(context, value: datetime | None, tz: str | None = None) -> str:
    """A moment in a zone it belongs to (a recurring ticket's, a schedule's), always labelled with it.
    Without ``tz``, the zone the value already carries."""
    if value is None:
        return ""
    zone = tz or value.tzinfo
    return show_time(value, zone, label=True, relative=not context.get(EMAIL_ZONE))


def weekday(value: datetime | None, tz: str | None = None) -> str:
    """"Mon": for previews of recurring rules, next to an ``in_zone`` time."""
    if value is None:
        return ""
    return value.astimezone(ZoneInfo(tz) if tz else value.tzinfo).strftime("%a")


def chart_macro(name: str):
    """A macro of ``templates/_macros/charts.html``, called from Python with the chart's computed geometry."""
    return get_template_attribute("_macros/charts.html", name)


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
    app.jinja_env.filters["weekday"] = weekday
    app.jinja_env.globals.update(url_with=url_with, PRIORITIES=PRIORITIES, OPEN_POLICIES=OPEN_POLICIES,
                                 CATCH_UP=CATCH_UP, SAFE_INLINE=SAFE_INLINE)
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True

    @app.context_processor
    def inject_settings():
        # time_zone: the site's, in which forms read the times typed into them; viewer_zone: the one shown.
        return {"time_zone": app.config["TIME_ZONE"], "viewer_zone": viewer_zone()}
