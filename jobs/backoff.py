"""Retry delays exactly as Celery computes them (celery.utils.time.get_exponential_backoff_interval)."""

from __future__ import annotations

import random
from collections.abc import Callable


def exponential_backoff(factor: int, retries: int, maximum: int, full_jitter: bool = False,
                        randrange: Callable[[int], int] = random.randrange) -> int:
    """Seconds before retry number ``retries`` (0-based): ``min(maximum, factor * 2**retries)``,
    then with full jitter a uniform whole number in ``[0, that]``."""
    countdown = min(maximum, factor * (2 ** retries))
    if full_jitter:
        countdown = randrange(countdown + 1)
    return max(0, countdown)


def backoff_factor(retry_backoff: bool | int | float) -> int:
    """Celery: ``retry_backoff=True`` means a factor of 1; a number is the factor."""
    return int(max(1.0, retry_backoff))
