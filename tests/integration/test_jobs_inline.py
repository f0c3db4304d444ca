"""``apply()`` and JOBS_EAGER: every attempt inline, audited, Celery's retry rules."""

from __future__ import annotations

import pytest

from itsm.extensions import db
from jobs.exceptions import MaxRetriesExceededError, SoftTimeLimitExceeded
from jobs.models import JobRun
from tests import jobtasks

pytestmark = pytest.mark.usefixtures("redis")


def statuses(job_id: str) -> list[str]:
    return list(db.session.scalars(db.select(JobRun.status).where(JobRun.job_id == job_id)
                                   .order_by(JobRun.attempt)))


def test_apply_runs_retries_inline_and_returns(app, redis):
    with app.app_context():
        assert jobtasks.flaky.apply(("calls", 2), job_id="inline-1") == 3
        assert statuses("inline-1") == ["retrying", "retrying", "succeeded"]


def test_apply_raises_the_original_exception_after_max_retries(app, redis):
    with app.app_context():
        with pytest.raises(jobtasks.Flaky, match="still broken"):
            jobtasks.always_fails.apply(("calls",), job_id="inline-2")
        assert statuses("inline-2") == ["retrying", "retrying", "failed"]
        assert int(redis.get("calls")) == 3


def test_retry_without_exc_past_max_raises_max_retries_exceeded(app, redis):
    with app.app_context(), pytest.raises(MaxRetriesExceededError):
        jobtasks.no_more.apply()


def test_bound_task_sees_its_request(app, redis):
    with app.app_context():
        assert jobtasks.bound.apply(("seen", 2), job_id="inline-3") == 2
    assert redis.lrange("seen", 0, -1) == [b"inline-3:0", b"inline-3:1", b"inline-3:2"]


def test_dont_autoretry_for(app, redis):
    with app.app_context():
        with pytest.raises(ValueError):
            jobtasks.filtered.apply(("v", "value"))
        assert int(redis.get("v")) == 1


def test_soft_time_limit_inline(app, redis):
    with app.app_context(), pytest.raises(SoftTimeLimitExceeded):
        jobtasks.soft_limit.apply(("cleanup",))
    assert redis.get("cleanup") == b"cleaned up"


def test_on_failure_hook_inline(app, redis):
    with app.app_context(), pytest.raises(RuntimeError):
        jobtasks.hooked.apply(job_id="inline-4")
    assert redis.lrange("failures", 0, -1) == [b"t.hooked:inline-4:RuntimeError"]


@pytest.fixture
def app_config():
    return {"JOBS_EAGER": True}


def test_eager_delay_runs_inline(app, redis):
    with app.app_context():
        handle = jobtasks.add.delay(20, 22)
        assert handle.result == 42 and handle.queue == "inline"
        assert statuses(handle.id) == ["succeeded"]
        with pytest.raises(ValueError, match="countdown"):
            jobtasks.add.apply_async((1, 2), countdown=-5)
    assert redis.dbsize() == 0  # nothing went through Redis
