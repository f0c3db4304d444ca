"""Small helpers shared by the forms."""

from __future__ import annotations

from collections.abc import Iterable

from wtforms.fields.choices import SelectChoice


def options(pairs: Iterable[tuple]) -> list[SelectChoice]:
    """(value, label) pairs as WTForms select choices."""
    return [SelectChoice(value, label) for value, label in pairs]


def strip(value):
    """A field filter that trims surrounding white space."""
    return value.strip() if isinstance(value, str) else value
