"""Each crontab field checked on its own, with a message for that field.

croniter accepts more than it should: a range that runs backwards (``5-1``) silently wraps round,
a step of any size (``*/1000000000000``) silently means "once", and values out of a field's bounds
are caught only sometimes. Here a range runs low to high, every value is within its field's
bounds and a step is between 1 and the field's span. What is left (names, ``L``, ``W``, ``#``)
is croniter's own syntax, which the caller still checks with ``croniter.is_valid``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True)
class FieldRule:
    label: str
    low: int
    high: int
    span: int  # how many distinct values the field has: the largest useful step
    names: dict[str, int] = field(default_factory=dict)


RULES = {
    "minute": FieldRule("minutes", 0, 59, 60),
    "hour": FieldRule("hours", 0, 23, 24),
    "day_of_month": FieldRule("days of the month", 1, 31, 31),
    "month_of_year": FieldRule("months", 1, 12, 12, {m: i + 1 for i, m in enumerate(MONTHS)}),
    "day_of_week": FieldRule("days of the week", 0, 7, 7, {d: i for i, d in enumerate(WEEKDAYS)}),  # 7 is Sunday
}
_VALUE = r"[0-9]+|[a-z]+"
_ITEM = re.compile(rf"(?P<base>\*|\?|(?P<a>{_VALUE})(?:-(?P<b>{_VALUE}))?)(?:/(?P<step>[0-9]+))?", re.IGNORECASE)
_LAST_DAY, _NEAREST_WEEKDAY = re.compile("l", re.IGNORECASE), re.compile(r"(?P<a>[0-9]+)w", re.IGNORECASE)
_NTH_WEEKDAY = re.compile(rf"(?P<a>{_VALUE})#(?P<n>[1-5])|l(?P<last>{_VALUE})", re.IGNORECASE)


def _value(rule: FieldRule, text: str) -> int | None:
    return int(text) if text.isdigit() else rule.names.get(text.lower())


def _item_problem(name: str, rule: FieldRule, item: str) -> str | None:
    """What is wrong with one comma-separated item, or None; "" for "not cron syntax at all"."""
    special = {"day_of_month": (_LAST_DAY, _NEAREST_WEEKDAY), "day_of_week": (_NTH_WEEKDAY,)}.get(name, ())
    found = next((m for m in (p.fullmatch(item) for p in special) if m), None)
    if found is not None:
        values = [v for v in (found.groupdict().get("a"), found.groupdict().get("last")) if v is not None]
        return next((p for p in (_bounds(rule, v) for v in values) if p is not None), None)
    match = _ITEM.fullmatch(item)
    if match is None:
        return ""
    if match["base"] == "?" and name not in ("day_of_month", "day_of_week"):
        return ""
    for text in (match["a"], match["b"]):
        if text is not None and (problem := _bounds(rule, text)) is not None:
            return problem
    if match["b"] is not None and _value(rule, match["a"]) > _value(rule, match["b"]):
        a, b = match["a"], match["b"]
        wrapped = f"{a}-{rule.high},{rule.low}-{b}"
        return f"the range {a}-{b} runs backwards; write the lower value first ({wrapped} wraps round)"
    if match["step"] is not None and not 1 <= int(match["step"]) <= rule.span:
        return f"a step is 1 to {rule.span}"
    return None


def _bounds(rule: FieldRule, text: str) -> str | None:
    value = _value(rule, text)
    if value is None:
        return ""
    if not rule.low <= value <= rule.high:
        return f"{rule.label} are {rule.low} to {rule.high}"
    return None


def field_problem(name: str, value: str) -> str | None:
    """The message for one crontab field, or None when its syntax and numbers are sound."""
    rule = RULES[name]
    for item in (value or "").strip().split(","):
        problem = _item_problem(name, rule, item.strip())
        if problem is not None:
            return f"Invalid cron field {value!r}" + (f": {problem}." if problem else ".")
    return None


def uses_weekday_forms(day_of_month: str, day_of_week: str) -> bool:
    """Whether the day fields use ``W`` (nearest weekday), ``#`` (nth weekday) or ``L5`` (last Friday):
    croniter intersects those with the other day field instead of applying cron's either-day rule."""
    return "w" in day_of_month.lower() or "#" in day_of_week or "l" in day_of_week.lower()
