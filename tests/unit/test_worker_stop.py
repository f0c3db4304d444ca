"""A stop signal that lands in the middle of the worker's recovery query must still stop the worker."""

from __future__ import annotations

from rq.exceptions import StopRequested

from jobs.worker import _caused_by_stop


def test_a_stop_hidden_behind_the_failed_rollback_is_seen():
    try:
        try:
            raise StopRequested()
        except StopRequested:
            raise RuntimeError("sending query failed: another command is already in progress")  # noqa: B904
    except RuntimeError as err:
        hidden = err
    assert _caused_by_stop(hidden)
    assert not _caused_by_stop(RuntimeError("the database is down"))
    assert not _caused_by_stop(None)
