"""Which time zone names the application accepts: real IANA zones, nothing the host adds."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

# ``available_timezones()`` lists every TZif file under the host's zoneinfo folders: Debian's
# ``localtime`` (a link to the host's own zone, whatever that is) and IANA's ``Factory``
# placeholder ("-00") are files there, but no place's time. ``posixrules`` is dropped by Python.
NOT_PLACES = frozenset({"localtime", "posixrules", "Factory"})


@cache
def known_zones() -> frozenset[str]:
    return frozenset(available_timezones()) - NOT_PLACES


def is_known_zone(name: str | None) -> bool:
    """An IANA zone name, exactly as spelled in the database (``Europe/Berlin``, ``UTC``)."""
    return bool(name) and name in known_zones()


def to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A naive wall-clock time in ``zone`` as aware UTC, as schedules and recurring tickets both read one.

    PEP 495's fold=0 reads a time inside a spring-forward gap with the offset from before the gap, which
    moves it forward by the gap, and an ambiguous fall-back time as its first instance: the rules the
    contract asks for.
    """
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)
