"""Tick math: time zones, DST both ways in several zones, anchoring, misfire plans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itsm.schedules.ticks import Clocked, Crontab, Interval, Solar, next_tick, plan, prev_tick, typical_period, upcoming


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
    [("skip", []), ("once", []), ("all", ["11:50", "11:51", "11:52", "11:53", "11:54", "11:55", "11:56",
                                          "11:57", "11:58", "11:59"])],
)
def test_plan_after_ten_minutes_down(misfire, fired):
    """The latest tick (12:00, 30 s late) runs as itself within the grace; the policy decides about the rest:
    ``once`` has its one run already, ``all`` adds each earlier one."""
    p = plan(EVERY_MINUTE, datetime(2026, 1, 1, 11, 49, 30, tzinfo=UTC), NOW, misfire=misfire, grace=40)
    assert [t.strftime("%H:%M") for t in p.fire_now] == fired
    assert p.missed == 10
    assert p.pending == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)  # within the grace: fired (late)


@pytest.mark.parametrize(("misfire", "runs"), [("skip", 1), ("once", 1), ("all", 6)])
def test_plan_a_gap_shorter_than_the_grace_is_still_decided_by_the_misfire_policy(misfire, runs):
    """Every 5 s, down for 30 s: six ticks are due, only the latest may run late as itself."""
    every5 = Interval(5, "seconds", datetime(2026, 1, 1, tzinfo=UTC))
    last = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    now = last + timedelta(seconds=30.2)
    p = plan(every5, last, now, misfire=misfire, grace=60)
    assert p.pending == last + timedelta(seconds=30)
    assert len(p.fire_now) + 1 == runs
    assert p.missed == 5


@pytest.mark.parametrize(("misfire", "fired", "pending"), [("skip", [], "12:01"), ("once", ["12:00"], "12:01"),
                                                           ("all", ["11:55", "11:56", "11:57", "11:58", "11:59",
                                                                    "12:00"], "12:01")])
def test_plan_when_even_the_latest_tick_is_older_than_the_grace(misfire, fired, pending):
    p = plan(EVERY_MINUTE, datetime(2026, 1, 1, 11, 54, 30, tzinfo=UTC), datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC),
             misfire=misfire, grace=5, catchup_window=3600)
    assert [t.strftime("%H:%M") for t in p.fire_now] == fired
    assert p.pending.strftime("%H:%M") == pending and p.missed == 6


def test_plan_all_is_capped_and_windowed():
    long_down = datetime(2025, 12, 1, tzinfo=UTC)
    capped = plan(EVERY_MINUTE, long_down, NOW, misfire="all", catchup_window=86400, catchup_cap=100)
    assert len(capped.fire_now) == 100 and capped.fire_now[-1] < NOW
    windowed = plan(EVERY_MINUTE, long_down, NOW, misfire="all", catchup_window=300, grace=60)
    assert len(windowed.fire_now) == 4  # 11:56 to 11:59; 12:00 runs as itself, 30 s late
    assert windowed.pending == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_plan_respects_start_and_expiry():
    start = NOW + timedelta(hours=1)
    assert plan(EVERY_MINUTE, NOW, NOW, start=start).pending == datetime(2026, 1, 1, 13, 1, tzinfo=UTC)
    assert plan(EVERY_MINUTE, NOW, NOW, expires=NOW + timedelta(seconds=10)).pending is None


def test_typical_period():
    assert typical_period(Crontab("0 9 * * 1-5", "UTC"), datetime(2026, 11, 20, tzinfo=UTC)) == timedelta(days=3)
    assert typical_period(EVERY_MINUTE, NOW) == timedelta(minutes=1)
    assert typical_period(Clocked(NOW), NOW) is None


def test_day_of_month_and_day_of_week_both_restricted_fire_on_either():
    """Cron's rule, kept: ``0 0 1 * 1`` fires on the 1st *or* on a Monday (once on a 1st that is a Monday)."""
    ticks = upcoming(Crontab("0 0 1 * 1", "UTC"), datetime(2026, 1, 26, tzinfo=UTC), 4)
    assert [t.strftime("%Y-%m-%d %a") for t in ticks] == ["2026-02-01 Sun", "2026-02-02 Mon", "2026-02-09 Mon",
                                                          "2026-02-16 Mon"]
    june = upcoming(Crontab("0 0 1 * 1", "UTC"), datetime(2026, 5, 31, tzinfo=UTC), 2)
    assert [t.strftime("%Y-%m-%d %a") for t in june] == ["2026-06-01 Mon", "2026-06-08 Mon"]
    # Either restriction alone is just that one.
    assert upcoming(Crontab("0 0 1 * *", "UTC"), datetime(2026, 1, 26, tzinfo=UTC), 1)[0].day == 1
    assert {t.weekday() for t in upcoming(Crontab("0 0 * * 1", "UTC"), datetime(2026, 1, 26, tzinfo=UTC), 5)} == {0}


ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)
POLICIES = st.sampled_from(["skip", "once", "all"])


def due_ticks(step: int, after: datetime, now: datetime) -> list[datetime]:
    k = int((after - ANCHOR).total_seconds() // step) + 1
    out = []
    while ANCHOR + timedelta(seconds=k * step) <= now:
        out.append(ANCHOR + timedelta(seconds=k * step))
        k += 1
    return out


@settings(max_examples=500, deadline=None)
@given(step=st.integers(1, 900), offset=st.floats(0, 86400), periods=st.floats(0, 250), misfire=POLICIES,
       grace=st.floats(0, 120), window=st.integers(60, 86400), cap=st.integers(1, 100),
       watched=st.one_of(st.none(), st.floats(0, 1)))
def test_plan_runs_the_latest_due_tick_and_leaves_every_other_to_the_policy(step, offset, periods, misfire, grace,
                                                                            window, cap, watched):
    """A gap of ``periods`` periods; ``watched``: where in it the previous pass of a running scheduler was
    (as a fraction of the gap), or none (the scheduler was down)."""
    spec = Interval(step, "seconds", ANCHOR)
    gap = periods * step
    after = ANCHOR + timedelta(seconds=offset)
    now = after + timedelta(seconds=gap)
    live_since = None if watched is None else after + timedelta(seconds=gap * watched)
    p = plan(spec, after, now, misfire=misfire, grace=grace, catchup_window=window, catchup_cap=cap,
             live_since=live_since)
    due = due_ticks(step, after, now)
    live_all = [t for t in due if live_since is not None and t > live_since]
    live, stale = live_all[-cap:], due[:len(due) - len(live_all)]
    runs = list(p.fire_now) + ([p.pending] if p.pending is not None and p.pending <= now else [])
    assert runs == sorted(set(runs)) and all(t in due for t in runs)
    on_time = bool(live) or (bool(due) and (now - due[-1]).total_seconds() <= grace)
    if on_time:
        assert p.pending == due[-1]  # the latest due tick, a little late, as itself
    else:
        assert p.pending == next_tick(spec, now) and p.pending > now
    missed = stale[:-1] if on_time and not live else stale
    assert p.missed == len(missed) + len(live_all) - len(live)
    if misfire == "skip":
        kept = []
    elif misfire == "once":
        kept = missed[-1:] if not on_time else []
    else:
        kept = [t for t in missed if t > now - timedelta(seconds=window)][-cap:]
    expected = kept + live + ([] if live or not on_time else due[-1:])
    assert runs == expected  # ``once``: one run for the gap, whatever its length


@settings(max_examples=300, deadline=None)
@given(step=st.integers(1, 900), passes=st.lists(st.floats(0.001, 5.0), min_size=1, max_size=40),
       misfire=POLICIES)
def test_plan_in_a_running_scheduler_runs_every_tick_exactly_once(step, passes, misfire):
    """A scheduler whose passes follow each other, however slow (up to 5 s apart here), misses no tick,
    whatever the policy: ticks that come due while it works are late, not missed."""
    spec = Interval(step, "seconds", ANCHOR)
    start = now = ANCHOR + timedelta(seconds=step * 10.5)
    last, runs, previous = start, [], start  # it was running (and had planned) at the start
    for seconds in passes:
        now += timedelta(seconds=seconds)
        p = plan(spec, last, now, misfire=misfire, live_since=previous, catchup_cap=1000)
        fired = list(p.fire_now) + ([p.pending] if p.pending <= now else [])
        runs += fired
        last = fired[-1] if fired else last
        previous = now
    assert runs == due_ticks(step, start, now)
