"""Tick math: time zones, DST both ways in several zones, anchoring, misfire plans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobs.ticks import Clocked, Crontab, Interval, Solar, next_tick, plan, prev_tick, typical_period, upcoming


def local(ticks, zone):
    return [t.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %z") for t in ticks]


@pytest.mark.parametrize(
    ("zone", "start", "expected"),
    [
        # spring forward (Toronto 2026-03-08, Berlin 2026-03-29, Sydney back in April) and fall back
        ("America/Toronto", datetime(2026, 3, 6, 12, tzinfo=UTC),
         ["2026-03-07 03:00 -0500", "2026-03-08 03:00 -0400", "2026-03-09 03:00 -0400"]),
        ("America/Toronto", datetime(2026, 10, 30, 12, tzinfo=UTC),
         ["2026-10-31 03:00 -0400", "2026-11-01 03:00 -0500", "2026-11-02 03:00 -0500"]),
        ("Europe/Berlin", datetime(2026, 3, 27, 12, tzinfo=UTC),
         ["2026-03-28 03:00 +0100", "2026-03-29 03:00 +0200", "2026-03-30 03:00 +0200"]),
        ("Europe/Berlin", datetime(2026, 10, 23, 12, tzinfo=UTC),
         ["2026-10-24 03:00 +0200", "2026-10-25 03:00 +0100", "2026-10-26 03:00 +0100"]),
        ("Australia/Sydney", datetime(2026, 4, 3, 12, tzinfo=UTC),
         ["2026-04-04 03:00 +1100", "2026-04-05 03:00 +1000", "2026-04-06 03:00 +1000"]),
    ],
)
def test_daily_cron_keeps_local_time_across_dst(zone, start, expected):
    assert local(upcoming(Crontab("0 3 * * *", zone), start, 3), zone) == expected


def test_time_that_does_not_exist_fires_once_moved_by_the_gap():
    ticks = upcoming(Crontab("30 2 * * *", "America/Toronto"), datetime(2026, 3, 7, 12, tzinfo=UTC), 2)
    assert local(ticks, "America/Toronto") == ["2026-03-08 03:30 -0400", "2026-03-09 02:30 -0400"]


def test_ambiguous_time_fires_once_at_its_first_instance():
    ticks = upcoming(Crontab("30 1 * * *", "Europe/London"), datetime(2026, 10, 24, 12, tzinfo=UTC), 2)
    assert local(ticks, "Europe/London") == ["2026-10-25 01:30 +0100", "2026-10-26 01:30 +0000"]


@pytest.mark.parametrize("zone", ["America/Toronto", "Europe/Berlin", "Australia/Sydney"])
@pytest.mark.parametrize("month", [3, 4, 10, 11])
def test_half_hourly_cron_through_a_whole_month_is_strictly_increasing_and_unique(zone, month):
    ticks = upcoming(Crontab("*/30 * * * *", zone), datetime(2026, month, 1, tzinfo=UTC), 31 * 48)
    assert all(b > a for a, b in zip(ticks, ticks[1:], strict=False))
    local_times = [t.astimezone(ZoneInfo(zone)).replace(tzinfo=None) for t in ticks]
    assert len(set(local_times)) == len(local_times)  # no wall-clock time fires twice


def test_cron_ignores_the_host_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    tick = next_tick(Crontab("0 9 * * 1", "America/Toronto"), datetime(2026, 11, 21, tzinfo=UTC))
    assert local([tick], "America/Toronto") == ["2026-11-23 09:00 -0500"]


def test_interval_is_anchored_and_never_drifts():
    spec = Interval(5, "minutes", datetime(2026, 1, 1, tzinfo=UTC))
    after = datetime(2026, 1, 1, 0, 7, 13, 500, tzinfo=UTC)
    assert next_tick(spec, after) == datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    ticks = upcoming(spec, after, 1000)
    assert ticks[-1] == datetime(2026, 1, 1, 0, 10, tzinfo=UTC) + timedelta(minutes=5 * 999)
    assert prev_tick(spec, after) == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert next_tick(spec, datetime(2026, 1, 1, 0, 10, tzinfo=UTC)) == datetime(2026, 1, 1, 0, 15, tzinfo=UTC)


def test_clocked_fires_once():
    at = datetime(2026, 5, 1, 8, tzinfo=UTC)
    assert next_tick(Clocked(at), at - timedelta(seconds=1)) == at
    assert next_tick(Clocked(at), at) is None


def test_solar_events_and_polar_night():
    toronto = Solar("sunrise", 43.65, -79.38)
    tick = next_tick(toronto, datetime(2026, 6, 21, tzinfo=UTC))
    assert tick.astimezone(ZoneInfo("America/Toronto")).hour == 5
    # Sunrise at 89°N: none from October to March; the next one is in spring.
    polar = next_tick(Solar("sunrise", 89.0, 0.0), datetime(2026, 11, 1, tzinfo=UTC))
    assert polar is not None and polar.month in (3, 4)


NOW = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
EVERY_MINUTE = Interval(1, "minutes", datetime(2026, 1, 1, tzinfo=UTC))


def test_plan_without_downtime_waits_for_the_next_tick():
    p = plan(EVERY_MINUTE, NOW - timedelta(seconds=20), NOW)
    assert p.fire_now == () and p.pending == datetime(2026, 1, 1, 12, 1, tzinfo=UTC) and p.missed == 0


def test_plan_a_tick_within_the_grace_is_fired_late_not_missed():
    p = plan(EVERY_MINUTE, datetime(2026, 1, 1, 11, 59, 30, tzinfo=UTC), NOW, grace=60)
    assert p.pending == datetime(2026, 1, 1, 12, 0, tzinfo=UTC) and p.missed == 0


@pytest.mark.parametrize(
    ("misfire", "fired"),
    [("skip", []), ("once", ["11:59"]), ("all", ["11:50", "11:51", "11:52", "11:53", "11:54", "11:55", "11:56",
                                                  "11:57", "11:58", "11:59"])],
)
def test_plan_after_ten_minutes_down(misfire, fired):
    p = plan(EVERY_MINUTE, datetime(2026, 1, 1, 11, 49, 30, tzinfo=UTC), NOW, misfire=misfire, grace=40)
    assert [t.strftime("%H:%M") for t in p.fire_now] == fired
    assert p.missed == 10
    assert p.pending == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)  # within the grace: fired (late)


def test_plan_all_is_capped_and_windowed():
    long_down = datetime(2025, 12, 1, tzinfo=UTC)
    capped = plan(EVERY_MINUTE, long_down, NOW, misfire="all", catchup_window=86400, catchup_cap=100)
    assert len(capped.fire_now) == 100 and capped.fire_now[-1] < NOW
    windowed = plan(EVERY_MINUTE, long_down, NOW, misfire="all", catchup_window=300, grace=60)
    assert len(windowed.fire_now) == 4


def test_plan_respects_start_and_expiry():
    start = NOW + timedelta(hours=1)
    assert plan(EVERY_MINUTE, NOW, NOW, start=start).pending == datetime(2026, 1, 1, 13, 1, tzinfo=UTC)
    assert plan(EVERY_MINUTE, NOW, NOW, expires=NOW + timedelta(seconds=10)).pending is None


def test_typical_period():
    assert typical_period(Crontab("0 9 * * 1-5", "UTC"), datetime(2026, 11, 20, tzinfo=UTC)) == timedelta(days=3)
    assert typical_period(EVERY_MINUTE, NOW) == timedelta(minutes=1)
    assert typical_period(Clocked(NOW), NOW) is None
