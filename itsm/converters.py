"""URL converters: an integer in a path is an id, so it stays within the database's INTEGER range."""

from __future__ import annotations

import builtins

from werkzeug.routing import IntegerConverter, Map, ValidationError

# Every id column is a SQL INTEGER: 32-bit signed on PostgreSQL, which refuses to compare one with 2**31
# ("integer out of range"). SQLite's are 64-bit, but no id there is ever larger than PostgreSQL's.
INTEGER_MIN, INTEGER_MAX = -(2**31), 2**31 - 1


class DatabaseInteger(IntegerConverter):
    """Werkzeug's ``int`` bounded to INTEGER: a number beyond it matches no route (a 404), whatever the view."""

    # min and max are the keyword names of Werkzeug's converter arguments (<int(max=9):n>).
    def __init__(self, map: Map, fixed_digits: int = 0, min: int | None = None, max: int | None = None,
                 signed: bool = False) -> None:
        low = INTEGER_MIN if min is None else builtins.max(min, INTEGER_MIN)
        high = INTEGER_MAX if max is None else builtins.min(max, INTEGER_MAX)
        super().__init__(map, fixed_digits, low, high, signed)

    def to_python(self, value: str) -> int:
        # More digits than INTEGER has is out of range before int() spends time on it.
        if len(value.lstrip("-").lstrip("0")) > len(str(INTEGER_MAX)):
            raise ValidationError()
        return super().to_python(value)

