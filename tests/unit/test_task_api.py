"""Pure parts of the task API: scheduling arguments, JSON-only arguments, direct calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from jobs.exceptions import Retry, TaskArgumentError
from jobs.task import MAX_DELAY, Task, check_json, resolve_eta

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def test_countdown_and_eta():
    assert resolve_eta(None, None, NOW) is None
    assert resolve_eta(0, None, NOW) is None
    assert resolve_eta(90, None, NOW) == NOW + timedelta(seconds=90)
    assert resolve_eta(None, NOW + timedelta(hours=1), NOW) == NOW + timedelta(hours=1)
    assert resolve_eta(None, NOW - timedelta(hours=1), NOW) is None  # in the past: run now
    assert resolve_eta(None, datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))), NOW) is None
    assert resolve_eta(MAX_DELAY.total_seconds(), None, NOW) == NOW + MAX_DELAY  # the bound itself is allowed


@pytest.mark.parametrize(
    ("countdown", "eta", "message"),
    [(-1, None, "countdown must be 0 or more"), (None, datetime(2026, 1, 1), "aware"),
     (5, NOW, "not both"), (float("nan"), None, "countdown must be a number of seconds"),
     (float("inf"), None, "countdown must be a number of seconds"), (1e300, None, "at most 10 years"),
     (10**20, None, "at most 10 years"), (None, NOW + timedelta(days=3654), "at most 10 years"),
     (None, datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-14))), "at most 10 years")],
)
def test_bad_schedule_arguments(countdown, eta, message):
    with pytest.raises(ValueError, match=message):
        resolve_eta(countdown, eta, NOW)


@pytest.mark.parametrize("bad", [datetime(2026, 1, 1), object(), {1, 2}, float("nan"), b"bytes"])
def test_arguments_must_be_json(bad):
    with pytest.raises(TaskArgumentError, match="plain JSON values"):
        check_json((bad,), {}, "x")
    with pytest.raises(TaskArgumentError):
        check_json((), {"k": bad}, "x")


def test_plain_values_pass():
    check_json((1, "a", [1, 2], {"k": None}, 2.5, True), {"ids": [1, 2, 3]}, "x")


def test_calling_a_task_directly_runs_the_function():
    def double(self, n):
        assert self.request.called_directly
        return n * 2

    task = Task(double, name="unit.double", bind=True)
    assert task(21) == 42
    assert task.__name__ == "double"


def test_retry_in_a_direct_call_raises_the_exception():
    task = Task(lambda: None, name="unit.noop")
    with pytest.raises(KeyError):
        task.retry(exc=KeyError("x"))
    with pytest.raises(Retry):
        task.retry()


def test_soft_limit_must_be_below_hard_limit():
    with pytest.raises(ValueError, match="soft_time_limit"):
        Task(lambda: None, name="unit.limits", time_limit=10, soft_time_limit=10)


def test_default_limits_are_30_and_25_minutes():
    task = Task(lambda: None, name="unit.defaults")
    assert (task.time_limit, task.soft_time_limit, task.max_retries, task.acks_late) == (1800, 1500, 3, True)
