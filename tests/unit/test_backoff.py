"""Retry delays pinned to Celery's documented behaviour (celery.utils.time.get_exponential_backoff_interval).

Celery's docs: with ``retry_backoff=True`` "the first retry will delay 1 second, the second retry will
delay 2 seconds, the third will delay 4 seconds, the fourth will delay 8 seconds, and so on";
``retry_backoff_max`` (default 600) caps it; ``retry_jitter`` (default True) picks a random delay
between zero and that value (full jitter).
"""

from __future__ import annotations

import random

import pytest

from jobs.backoff import backoff_factor, exponential_backoff


def test_documented_sequence_without_jitter():
    assert [exponential_backoff(1, n, 600) for n in range(6)] == [1, 2, 4, 8, 16, 32]


def test_cap_is_retry_backoff_max():
    assert [exponential_backoff(1, n, 600) for n in (9, 10, 20)] == [512, 600, 600]
    assert [exponential_backoff(3, n, 10) for n in range(4)] == [3, 6, 10, 10]


@pytest.mark.parametrize(("retry_backoff", "factor"), [(True, 1), (1, 1), (2, 2), (5, 5), (0.5, 1), (2.9, 2)])
def test_factor_is_int_of_at_least_one(retry_backoff, factor):
    assert backoff_factor(retry_backoff) == factor


def test_full_jitter_is_randrange_of_countdown_plus_one():
    calls = []

    def fake_randrange(stop):
        calls.append(stop)
        return stop - 1

    assert exponential_backoff(1, 3, 600, full_jitter=True, randrange=fake_randrange) == 8
    assert calls == [9]


def test_jitter_stays_within_bounds_and_covers_them():
    rng = random.Random(7)
    for retries in range(12):
        cap = min(600, 2 ** retries)
        seen = {exponential_backoff(1, retries, 600, True, rng.randrange) for _ in range(400)}
        assert min(seen) >= 0 and max(seen) <= cap
        if cap <= 8:
            assert seen == set(range(cap + 1))


def test_zero_factor_never_negative():
    assert exponential_backoff(0, 5, 600, full_jitter=True) == 0
