"""Small helpers shared by the forms."""

from __future__ import annotations

from collections.abc import Iterable

from wtforms.fields.choices import SelectChoice
from wtforms.validators import ValidationError

# Near year 1 or 9999, converting between time zones or stepping a series leaves datetime's range
# (an OverflowError, a 500): date and time fields keep to these years.
FIRST_YEAR, LAST_YEAR = 1900, 2999
YEARS_MESSAGE = f"Choose a time between the years {FIRST_YEAR} and {LAST_YEAR}."


def options(pairs: Iterable[tuple]) -> list[SelectChoice]:
    """(value, label) pairs as WTForms select choices."""
    return [SelectChoice(value, label) for value, label in pairs]


def strip(value):
    """A field filter that trims surrounding white space."""
    return value.strip() if isinstance(value, str) else value


def year_in_range(value) -> bool:
    return FIRST_YEAR <= value.year <= LAST_YEAR


def sane_year(form, field) -> None:
    """A field validator: a date or time within FIRST_YEAR and LAST_YEAR."""
    if field.data is not None and not year_in_range(field.data):
        raise ValidationError(YEARS_MESSAGE)
