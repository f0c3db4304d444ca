"""Which time zone names the application accepts: real IANA zones, nothing the host adds."""

from __future__ import annotations

from functools import cache
from zoneinfo import available_timezones

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
