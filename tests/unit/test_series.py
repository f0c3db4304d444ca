"""What one processing pass owes a template (pure logic), and title placeholders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from itsm.recurrence_rules import Rule
from itsm.recurring.series import CATCH_UP_CAP, Series, plan, render_title

START = datetime(2026, 1, 5, 9, tzinfo=UTC)  # a Monday
DAILY = Series(Rule("daily"), START, "UTC")


def test_latest_only_after_downtime():
    p = plan(DAILY, START, 0, timedelta(0), START + timedelta(days=10, hours=1))
    assert p.create == [START + timedelta(days=10)] and p.due == 11 and p.missed == 10
    assert p.next_occurrence == START + timedelta(days=11) and p.position == 11


def test_every_missed_time_up_to_the_cap():
    p = plan(DAILY, START, 0, timedelta(0), START + timedelta(days=300), catch_up="all")
    assert len(p.create) == CATCH_UP_CAP and p.create[-1] == START + timedelta(days=300)
    assert p.due == 301


def test_nothing_due_yet_and_lead_time():
    assert plan(DAILY, START, 0, timedelta(0), START - timedelta(seconds=1)).create == []
    early = plan(DAILY, START, 0, timedelta(hours=2), START - timedelta(hours=1))
    assert early.create == [START] and early.next_occurrence == START + timedelta(days=1)


def test_a_count_ends_the_series():
    counted = Series(Rule("daily"), START, "UTC", count=3)
    p = plan(counted, START, 0, timedelta(0), START + timedelta(days=10), catch_up="all")
    assert len(p.create) == 3 and p.next_occurrence is None and p.position == 3
    assert counted.upcoming(START, 0, 5) == [START + timedelta(days=i) for i in range(3)]


def test_first_moves_to_a_time_that_fits_the_rule():
    mondays = Series(Rule("weekly", weekdays=(0,)), START + timedelta(days=1), "UTC")  # a Tuesday
    assert mondays.first() == START + timedelta(days=7)


@settings(deadline=None)  # a 2,000-day catch-up takes tens of ms, more on a busy machine
@given(days=st.integers(0, 2000), catch_up=st.sampled_from(["latest", "all"]))
def test_a_pass_always_leaves_the_next_time_in_the_future(days, catch_up):
    now = START + timedelta(days=days, minutes=5)
    p = plan(DAILY, START, 0, timedelta(0), now, catch_up)
    assert p.next_occurrence > now and p.due == days + 1
    assert p.create == sorted(p.create) and all(t <= now for t in p.create)
    assert p.create[-1] == START + timedelta(days=days)


def test_placeholders_in_the_template_zone():
    when = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)  # already January 1st in Berlin
    assert render_title("Check {date} {time} {week} {weekday} {month} {day} {year}", when, "Europe/Berlin") == (
        "Check 2027-01-01 00:30 2026-W53 Friday January 1 2027")
    assert render_title("Keep {braces} and {{date}}", when, "UTC") == "Keep {braces} and {2026-12-31}"
    assert len(render_title("x" * 195 + "{date}", when, "UTC")) == 200
