"""Richer rules: weekdays, ordinal weekdays, last day, business days, end date; and agreement with
the simple engine where the rules overlap."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itsm import recurrence
from itsm.recurrence_rules import Rule, next_occurrence, upcoming

TZ = "Europe/Berlin"


def days(ticks, tz=TZ, fmt="%a %Y-%m-%d %H:%M"):
    return [t.astimezone(ZoneInfo(tz)).strftime(fmt) for t in ticks]


def at(*args, tz=TZ):
    return datetime(*args, tzinfo=ZoneInfo(tz))


def test_weekly_on_several_weekdays():
    rule = Rule("weekly", weekdays=(0, 2, 4))
    got = days(upcoming(rule, at(2026, 11, 2, 9), at(2026, 11, 1), TZ, 5))
    assert got == ["Mon 2026-11-02 09:00", "Wed 2026-11-04 09:00", "Fri 2026-11-06 09:00", "Mon 2026-11-09 09:00",
                   "Wed 2026-11-11 09:00"]


def test_every_second_week_keeps_its_phase_far_from_the_anchor():
    rule = Rule("weekly", every=2, weekdays=(0,))
    got = days(upcoming(rule, at(2026, 1, 5, 9), at(2030, 6, 1), TZ, 3), fmt="%Y-%m-%d")
    weeks = [(datetime.strptime(d, "%Y-%m-%d").date() - date(2026, 1, 5)).days // 7 for d in got]
    assert all(w % 2 == 0 for w in weeks) and weeks[1] - weeks[0] == 2


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (Rule("monthly", monthly_mode="ordinal", ordinal=1, ordinal_weekday=0),
         ["Mon 2026-12-07 08:00", "Mon 2027-01-04 08:00", "Mon 2027-02-01 08:00"]),
        (Rule("monthly", monthly_mode="ordinal", ordinal=-1, ordinal_weekday=4),
         ["Fri 2026-11-27 08:00", "Fri 2026-12-25 08:00", "Fri 2027-01-29 08:00"]),
        (Rule("monthly", monthly_mode="last_day"),
         ["Mon 2026-11-30 08:00", "Thu 2026-12-31 08:00", "Sun 2027-01-31 08:00"]),
    ],
)
def test_monthly_options(rule, expected):
    assert days(upcoming(rule, at(2026, 11, 1, 8), at(2026, 11, 20), TZ, 3)) == expected


def test_monthly_on_the_31st_clamps_like_the_simple_engine():
    got = days(upcoming(Rule("monthly"), at(2027, 1, 31, 8), at(2027, 1, 1), TZ, 4), fmt="%m-%d")
    assert got == ["01-31", "02-28", "03-31", "04-30"]


def test_every_weekday():
    got = days(upcoming(Rule("daily", weekdays_only=True), at(2026, 11, 20, 7), at(2026, 11, 20), TZ, 4))
    assert got == ["Fri 2026-11-20 07:00", "Mon 2026-11-23 07:00", "Tue 2026-11-24 07:00", "Wed 2026-11-25 07:00"]


def test_business_days_skip_or_move_past_holidays():
    holidays = frozenset({date(2026, 12, 25), date(2027, 1, 1)})
    skip = Rule("daily", business_days="skip", holidays=holidays)
    got = days(upcoming(skip, at(2026, 12, 24, 9), at(2026, 12, 24), TZ, 3), fmt="%m-%d")
    assert got == ["12-24", "12-28", "12-29"]
    moved = Rule("monthly", business_days="next", holidays=holidays)
    got = days(upcoming(moved, at(2026, 12, 25, 9), at(2026, 12, 1), TZ, 2), fmt="%Y-%m-%d")
    assert got == ["2026-12-28", "2027-01-25"]


def test_end_date_ends_the_series():
    rule = Rule("daily", end_date=date(2026, 11, 22))
    assert len(upcoming(rule, at(2026, 11, 20, 9), at(2026, 11, 19), TZ, 10)) == 3
    assert next_occurrence(rule, at(2026, 11, 20, 9), at(2026, 11, 23), TZ) is None


def test_local_time_kept_across_dst():
    rule = Rule("weekly", weekdays=(0,))
    got = days(upcoming(rule, at(2026, 3, 16, 9), at(2026, 3, 20), TZ, 2), fmt="%Y-%m-%d %H:%M %z")
    assert got == ["2026-03-23 09:00 +0100", "2026-03-30 09:00 +0200"]


@pytest.mark.parametrize(
    ("rule", "field"),
    [(Rule("daily", every=0), "recurrence_every"), (Rule("daily", weekdays=(1,)), "recurrence_weekdays"),
     (Rule("weekly", weekdays_only=True), "recurrence_weekdays_only"),
     (Rule("weekly", monthly_mode="last_day"), "recurrence_monthly_mode"),
     (Rule("monthly", monthly_mode="ordinal", ordinal=5, ordinal_weekday=0), "recurrence_ordinal"),
     (Rule("hourly"), "recurrence_interval")],
)
def test_contradictions_are_field_errors(rule, field):
    assert field in rule.problems()


def test_describe():
    assert Rule("monthly", monthly_mode="ordinal", ordinal=-1, ordinal_weekday=4).describe() == \
        "every month on the last Friday"
    assert Rule("daily", weekdays_only=True).describe() == "every weekday"


@settings(max_examples=200, deadline=None)
@given(anchor=st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2039, 1, 1)),
       interval=st.sampled_from(["daily", "weekly", "monthly", "yearly"]), every=st.integers(1, 4),
       offset=st.integers(-30, 3000), tz=st.sampled_from(["UTC", "America/Toronto", "Australia/Sydney", TZ]))
def test_simple_rules_agree_with_the_contract_engine(anchor, interval, every, offset, tz):
    anchor = anchor.replace(tzinfo=ZoneInfo(tz), microsecond=0)
    after = anchor + timedelta(days=offset, hours=5)
    simple = recurrence.next_occurrence(anchor, interval, every, after, tz)
    rich = next_occurrence(Rule(interval, every=every), anchor, after, tz)
    assert rich == simple


def test_utc_output():
    assert next_occurrence(Rule("daily"), at(2026, 1, 1, 9), at(2026, 1, 1, 10), TZ).tzinfo == UTC
