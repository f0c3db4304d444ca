"""Option types for the ``flask`` commands: every number has bounds on both sides.

click's FloatRange lets ``nan`` through (it compares false with both bounds) and reports ``inf`` only when
a bound happens to be set; a number that got through then ended in an OverflowError traceback deep in
``timedelta``. A command's numbers are therefore ``click.IntRange(min, max)`` or ``FiniteFloatRange``."""

from __future__ import annotations

import math

import click


class FiniteFloatRange(click.FloatRange):
    """A finite float within ``[min, max]``; both bounds are required."""

    def __init__(self, min: float, max: float) -> None:  # the keyword names of click's ranges
        super().__init__(min=min, max=max)

    def convert(self, value, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a number in the range {self._describe_range()}.", param, ctx)
        return super().convert(number, param, ctx)
