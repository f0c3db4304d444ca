"""The schedule rules every writer shares (form, sync, ORM): cron fields, zones, bounds, a firing to come."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from itsm.schedules.validation import Definition, ValidationError, validate

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)


def crontab(minute="0", hour="3", day_of_month="*", month_of_year="*", day_of_week="*", zone="UTC") -> Definition:
    return Definition(name="n", task="t.add", kind="crontab", timezone=zone,
                      crontab={"minute": minute, "hour": hour, "day_of_month": day_of_month,
                               "month_of_year": month_of_year, "day_of_week": day_of_week})


def problems(d: Definition) -> dict[str, str]:
    try:
        validate(d, known_tasks={"t.add"}, queues=("default",), name_taken=False, now=NOW)
    except ValidationError as err:
        return err.errors
    return {}


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"minute": "5-1"}, "minute", "Invalid cron field '5-1': the range 5-1 runs backwards"),
        ({"minute": "*/1000000000000"}, "minute", "Invalid cron field '*/1000000000000': a step is 1 to 60"),
        ({"minute": "*/" + "9" * 30}, "minute", "a step is 1 to 60"),
        ({"minute": "0-59/61"}, "minute", "a step is 1 to 60"),
        ({"minute": "*/0"}, "minute", "a step is 1 to 60"),
        ({"minute": "60"}, "minute", "Invalid cron field '60': minutes are 0 to 59"),
        ({"minute": "1,2,99"}, "minute", "minutes are 0 to 59"),
        ({"hour": "24"}, "hour", "hours are 0 to 23"),
        ({"hour": "2-" + "9" * 30}, "hour", "hours are 0 to 23"),
        ({"hour": "*/25"}, "hour", "a step is 1 to 24"),
        ({"day_of_month": "0"}, "day_of_month", "days of the month are 1 to 31"),
        ({"day_of_month": "20-10"}, "day_of_month", "runs backwards"),
        ({"month_of_year": "13"}, "month_of_year", "months are 1 to 12"),
        ({"month_of_year": "DEC-JAN"}, "month_of_year", "runs backwards"),
        ({"day_of_week": "5-1"}, "day_of_week", "runs backwards"),
        ({"day_of_week": "8"}, "day_of_week", "days of the week are 0 to 7"),
        ({"day_of_week": "funday"}, "day_of_week", "Invalid cron field 'funday'"),
        ({"minute": ""}, "minute", "Invalid cron field ''"),
        ({"minute": "1--2"}, "minute", "Invalid cron field '1--2'"),
        ({"minute": "+5"}, "minute", "Invalid cron field '+5'"),
        ({"minute": "?"}, "minute", "Invalid cron field '?'"),
    ],
)
def test_nonsense_cron_fields_are_refused_with_a_message_for_their_field(fields, field, message):
    found = problems(crontab(**fields))
    assert field in found and message in found[field], found


@pytest.mark.parametrize("zone", ["localtime", "posixrules", "Factory", "", None, " UTC", "Mars/Base", "../etc/x"])
def test_only_real_iana_zones_are_accepted(zone):
    assert "Unknown time zone" in problems(crontab(zone=zone))["timezone"]


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "US/Eastern"])
def test_iana_zones_pass(zone):
    assert problems(crontab(zone=zone)) == {}


@pytest.mark.parametrize(
    "fields",
    [
        {"minute": "*/15"}, {"minute": "0,30", "hour": "9-17"}, {"day_of_week": "MON-FRI"},
        {"day_of_week": "1-5/2"}, {"month_of_year": "JAN-MAR"}, {"day_of_month": "L"},
        {"day_of_month": "15W"}, {"day_of_week": "1#2"}, {"day_of_week": "L5"}, {"day_of_week": "7"},
        {"day_of_week": "5-7"}, {"minute": "0/5"}, {"minute": "*/60"}, {"day_of_month": "?"},
        {"day_of_month": "1", "day_of_week": "1"}, {"day_of_month": "29", "month_of_year": "2"},
        {"minute": "59", "hour": "23", "day_of_month": "31", "month_of_year": "12", "day_of_week": "0-6"},
    ],
)
def test_ordinary_cron_fields_pass(fields):
    assert problems(crontab(**fields)) == {}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"day_of_month": "30", "month_of_year": "2"}, "day_of_month"),
        ({"day_of_month": "31", "month_of_year": "2,4,6,9,11"}, "day_of_month"),
        # The 29th of February on a Monday with five Mondays: next in 2044, beyond the five years.
        ({"day_of_week": "1#5", "month_of_year": "2"}, "day_of_week"),
    ],
)
def test_a_crontab_with_no_firing_in_the_next_five_years_is_refused(fields, field):
    found = problems(crontab(**fields))
    assert "never fires in the next 5 years" in found[field], found


@pytest.mark.parametrize(("dom", "dow"), [("1", "1#2"), ("15W", "1"), ("1", "L5")])
def test_nth_weekday_or_nearest_weekday_beside_the_other_day_field_is_refused(dom, dow):
    """croniter intersects these instead of applying cron's either-day rule; say so rather than surprise."""
    found = problems(crontab(day_of_month=dom, day_of_week=dow))
    assert "cannot be combined" in found["day_of_week"], found


@pytest.mark.parametrize(
    ("every", "period", "ok"),
    [(3653, "days", True), (3654, "days", False), (87672, "hours", True), (87673, "hours", False),
     (5_260_320, "minutes", True), (5_260_321, "minutes", False), (315_619_200, "seconds", True),
     (315_619_201, "seconds", False), (10**9, "microseconds", True), (10**9 + 1, "microseconds", False),
     (10**9, "days", False), (1, "days", True)],
)
def test_intervals_are_bounded_at_ten_years(every, period, ok):
    d = Definition(name="n", task="t.add", kind="interval", every=every, period=period)
    found = problems(d)
    assert (found == {}) is ok, found
    if not ok:
        assert "at most" in found["every"] and "10 years" in found["every"]



@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("0 0 1 * 1", "At 12:00 AM, on day 1 of the month or on Monday"),
        ("0 9 1,15 * 1-5", "At 09:00 AM, on day 1 and 15 of the month or on Monday through Friday"),
        ("0 9 L * MON,WED", "At 09:00 AM, on the last day of the month or on Monday and Wednesday"),
        ("0 0 1 1 1", "At 12:00 AM, on day 1 of the month or on Monday, only in January"),
        # One day field restricted: cron-descriptor's own words.
        ("0 9 * * 1-5", "At 09:00 AM, Monday through Friday"),
        ("0 0 1 * *", "At 12:00 AM, on day 1 of the month"),
    ],
)
def test_both_day_fields_restricted_are_described_as_either(expression, words):
    from itsm.schedules.describe import crontab_in_words

    assert crontab_in_words(expression) == words
