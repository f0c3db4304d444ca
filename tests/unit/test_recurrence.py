"""The recurrence engine: pinned examples and properties (hypothesis)."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil import rrule
from hypothesis import given, settings
from hypothesis import strategies as st

from itsm.recurrence import next_occurrence, occurrences_between, to_utc

ZONES = ["UTC", "America/Toronto", "Europe/Berlin", "Australia/Sydney", "Asia/Kolkata", "America/Sao_Paulo"]


def local(dt: datetime, tz: str) -> str:
    return dt.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def series(anchor, interval, every, tz, count, start=None):
    out, current = [], start or anchor - timedelta(seconds=1)
    for _ in range(count):
        current = next_occurrence(anchor, interval, every, current, tz)
        out.append(current)
    return out


def test_monday_nine_oclock_stays_local_across_dst():
    tz = "America/Toronto"
    anchor = datetime(2026, 2, 23, 9, 0, tzinfo=ZoneInfo(tz))  # a Monday
    got = [local(t, tz) for t in series(anchor, "weekly", 1, tz, 4)]
    assert got == ["2026-02-23 09:00", "2026-03-02 09:00", "2026-03-09 09:00", "2026-03-16 09:00"]


def test_monthly_on_the_31st_clamps_and_returns():
    anchor = datetime(2026, 1, 31, 8, 0, tzinfo=UTC)
    got = [t.strftime("%m-%d") for t in series(anchor, "monthly", 1, "UTC", 6)]
    assert got == ["01-31", "02-28", "03-31", "04-30", "05-31", "06-30"]


def test_yearly_on_february_29():
    anchor = datetime(2028, 2, 29, tzinfo=UTC)
    got = [t.strftime("%Y-%m-%d") for t in series(anchor, "yearly", 1, "UTC", 5)]
    assert got == ["2028-02-29", "2029-02-28", "2030-02-28", "2031-02-28", "2032-02-29"]


def test_gap_moves_forward_and_ambiguous_takes_first():
    tz = "America/Toronto"
    anchor = datetime(2026, 3, 6, 2, 30, tzinfo=ZoneInfo(tz))
    got = [t.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M %z") for t in series(anchor, "daily", 1, tz, 3)]
    assert got == ["03-06 02:30 -0500", "03-07 02:30 -0500", "03-08 03:30 -0400"]
    fall = datetime(2026, 10, 31, 1, 30, tzinfo=ZoneInfo(tz))
    got = [t.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M %z") for t in series(fall, "daily", 1, tz, 3)]
    assert got == ["10-31 01:30 -0400", "11-01 01:30 -0400", "11-02 01:30 -0500"]


def test_strictly_after_and_before_the_anchor():
    anchor = datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert next_occurrence(anchor, "daily", 1, anchor, "UTC") == anchor + timedelta(days=1)
    assert next_occurrence(anchor, "daily", 1, anchor - timedelta(days=30), "UTC") == anchor


@pytest.mark.parametrize(("bad", "message"), [({"every": 0}, "every"), ({"interval": "hourly"}, "interval"),
                                               ({"after": datetime(2026, 1, 1)}, "aware")])
def test_bad_arguments(bad, message):
    args = {"anchor": datetime(2026, 1, 1, tzinfo=UTC), "interval": "daily", "every": 1,
            "after": datetime(2026, 1, 2, tzinfo=UTC), "tz": "UTC"}
    args.update(bad)
    with pytest.raises(ValueError, match=message):
        next_occurrence(**args)


def test_catch_up_window_is_capped():
    anchor = datetime(2026, 1, 1, 9, tzinfo=UTC)
    missed = occurrences_between(anchor, "daily", 1, anchor, anchor + timedelta(days=10), "UTC", limit=100)
    assert len(missed) == 10
    assert len(occurrences_between(anchor, "daily", 1, anchor, anchor + timedelta(days=500), "UTC", limit=100)) == 100


anchors = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 12, 31))
intervals = st.sampled_from(["daily", "weekly", "monthly", "yearly"])


@settings(max_examples=300, deadline=None)
@given(anchor=anchors, interval=intervals, every=st.integers(1, 5), tz=st.sampled_from(ZONES),
       offset_days=st.integers(-400, 4000), offset_seconds=st.integers(0, 86399))
def test_properties(anchor, interval, every, tz, offset_days, offset_seconds):
    zone = ZoneInfo(tz)
    anchor = anchor.replace(tzinfo=zone, fold=0)
    after = anchor + timedelta(days=offset_days, seconds=offset_seconds)
    first = next_occurrence(anchor, interval, every, after, tz)
    second = next_occurrence(anchor, interval, every, first, tz)
    assert first > after and second > first  # strictly increasing, always after `after`
    assert first.tzinfo == UTC
    anchor_local = anchor.astimezone(zone)
    for t in (first, second):
        got = t.astimezone(zone)
        # Monthly and yearly: the anchor's day, or the month's last day when the month is shorter.
        if interval in ("monthly", "yearly"):
            assert got.day == min(anchor_local.day, calendar.monthrange(got.year, got.month)[1])
        # The anchor's wall-clock time; where that time does not exist that day, moved forward by the gap.
        wanted = datetime.combine(got.date(), anchor_local.time())
        if to_utc(wanted, zone).astimezone(zone).replace(tzinfo=None) == wanted:
            assert got.replace(tzinfo=None) == wanted
        else:
            assert got.replace(tzinfo=None) > wanted and t == to_utc(wanted, zone)


@settings(max_examples=200, deadline=None)
@given(anchor=anchors, interval=intervals, every=st.integers(1, 4), count=st.integers(1, 12))
def test_equals_dateutil_rrule_where_it_can_say_the_same(anchor, interval, every, count):
    anchor = anchor.replace(microsecond=0)
    if interval in ("monthly", "yearly") and anchor.day > 28:
        anchor = anchor.replace(day=28)  # rrule skips months without the day; we clamp
    freq = {"daily": rrule.DAILY, "weekly": rrule.WEEKLY, "monthly": rrule.MONTHLY, "yearly": rrule.YEARLY}[interval]
    expected = [d.replace(tzinfo=UTC) for d in rrule.rrule(freq, dtstart=anchor, interval=every, count=count)]
    assert series(anchor.replace(tzinfo=UTC), interval, every, "UTC", count) == expected
