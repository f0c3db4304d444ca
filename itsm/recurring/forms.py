"""The recurrence controls of the ticket form, and their checks.

The same fields serve the ticket form (with CSRF) and the preview endpoint (a plain
query-string form), so both read and check a rule the same way.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from flask import current_app
from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    Form,
    IntegerField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.validators import Optional
from wtforms.widgets import CheckboxInput, ListWidget

from itsm.formutil import YEARS_MESSAGE, options, strip, year_in_range
from itsm.recurrence_rules import ORDINALS, WEEKDAY_NAMES, Rule
from itsm.recurring.series import Recurrence, Series, parse_weekdays
from itsm.tickets.models import BUSINESS_DAYS, CATCH_UP, OPEN_POLICIES
from itsm.zones import known_zones, to_utc

INTERVAL_CHOICES = options([("daily", "day(s)"), ("weekly", "week(s)"), ("monthly", "month(s)"),
                            ("yearly", "year(s)")])
WEEKDAY_CHOICES = options(enumerate(WEEKDAY_NAMES))
ORDINAL_CHOICES = options((k, v.capitalize()) for k, v in ORDINALS.items())
ENDS = {"never": "Never", "on_date": "On a date", "after_count": "After a number of occurrences"}
MAX_COUNT = 100_000
MAX_LEAD_HOURS = 8760
LOCAL_FORMAT = "%Y-%m-%dT%H:%M"


def time_zones() -> frozenset[str]:
    return known_zones()


@cache
def sorted_time_zones() -> list[str]:
    return sorted(time_zones())


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class RecurrenceForm(Form):
    """Recurrence fields; named like the Ticket columns they fill."""

    is_recurring = BooleanField("Repeat this ticket on a schedule")
    recurrence_every = IntegerField("Repeat every", default=1, validators=[Optional()])
    recurrence_interval = SelectField("Unit", choices=INTERVAL_CHOICES, default="weekly")
    recurrence_weekdays = MultiCheckboxField("On", coerce=int, choices=WEEKDAY_CHOICES, validators=[Optional()])
    recurrence_weekdays_only = BooleanField("Weekdays only (Monday to Friday)")
    recurrence_monthly_mode = RadioField("Day of the month", default="day", choices=options([
        ("day", "The same day as the first occurrence (the month's last day in shorter months)"),
        ("ordinal", "A weekday of the month"),
        ("last_day", "The last day of the month"),
    ]))
    recurrence_ordinal = SelectField("Which", coerce=int, choices=ORDINAL_CHOICES, default=1)
    recurrence_ordinal_weekday = SelectField("Weekday", coerce=int, choices=WEEKDAY_CHOICES, default=0)
    recurrence_business_days = SelectField("Weekends and holidays", choices=options(BUSINESS_DAYS.items()),
                                           default="")
    next_occurrence = DateTimeLocalField("Next occurrence", format=LOCAL_FORMAT, validators=[Optional()])
    recurrence_time_zone = StringField("Time zone", filters=[strip])
    recurrence_ends = RadioField("Ends", choices=options(ENDS.items()), default="never")
    recurrence_end_date = DateField("End date", validators=[Optional()])
    recurrence_count = IntegerField("Occurrences", validators=[Optional()])
    recurrence_lead_hours = IntegerField("Create this many hours early", default=0, validators=[Optional()])
    recurrence_open_policy = SelectField("If the previous ticket is still open",
                                         choices=options(OPEN_POLICIES.items()), default="always")
    recurrence_catch_up = SelectField("After downtime", choices=options(CATCH_UP.items()), default="latest")


RECURRENCE_FIELDS = tuple(name for name in dir(RecurrenceForm) if name.startswith("recurrence_")) + (
    "next_occurrence",)


def _error(form: Form, name: str, message: str) -> None:
    field = form[name]
    field.errors = [*field.errors, message]


def default_time_zone() -> str:
    return current_app.config["TIME_ZONE"]


def fill_defaults(form: RecurrenceForm) -> None:
    if not form.recurrence_time_zone.data:
        form.recurrence_time_zone.data = default_time_zone()


def clear_errors(form: RecurrenceForm) -> None:
    """A ticket that does not repeat ignores whatever the hidden recurrence controls hold."""
    for name in RECURRENCE_FIELDS:
        form[name].errors = []


# The controls that show only for one choice: (the controlling field, its value) -> the fields it shows.
# Whatever the others hold (the user ticked Monday, then chose "monthly") is ignored and cleared.
SHOWN_FOR = {
    ("recurrence_interval", "weekly"): ("recurrence_weekdays",),
    ("recurrence_interval", "daily"): ("recurrence_weekdays_only",),
    ("recurrence_interval", "monthly"): ("recurrence_monthly_mode",),
    ("recurrence_monthly_mode", "ordinal"): ("recurrence_ordinal", "recurrence_ordinal_weekday"),  # when monthly
    ("recurrence_ends", "on_date"): ("recurrence_end_date",),
    ("recurrence_ends", "after_count"): ("recurrence_count",),
}
CONDITIONAL = frozenset(name for names in SHOWN_FOR.values() for name in names)
CLEARED = {"recurrence_weekdays": [], "recurrence_weekdays_only": False, "recurrence_monthly_mode": "day",
           "recurrence_ordinal": 1, "recurrence_ordinal_weekday": 0, "recurrence_end_date": None,
           "recurrence_count": None}


def shown_fields(form: RecurrenceForm) -> frozenset[str]:
    """The conditional controls the chosen unit, monthly option and end show."""
    shown = set()
    for (name, value), fields in SHOWN_FOR.items():
        if form[name].data == value and not form[name].errors:
            shown.update(fields)
    if form.recurrence_interval.data != "monthly":  # the ordinal controls sit inside the monthly ones
        shown.difference_update(SHOWN_FOR[("recurrence_monthly_mode", "ordinal")])
    return frozenset(shown)


def drop_hidden(form: RecurrenceForm) -> None:
    """Clear the controls that do not apply to the chosen options, and their errors: what the user cannot
    see neither blocks the form nor reaches the rule (also without JavaScript, where they all post)."""
    shown = shown_fields(form)
    for name in CONDITIONAL - shown:
        form[name].data = CLEARED[name]
        form[name].errors = []
        form[name].raw_data = []  # text inputs show what was posted otherwise


def check(form: RecurrenceForm) -> Recurrence | None:
    """Field-level checks of the recurrence controls; the rule when they all pass."""
    drop_hidden(form)
    every = form.recurrence_every.data
    if not form.recurrence_every.errors:
        if every is None:
            _error(form, "recurrence_every", "Enter how often it repeats: 1 or more.")
        elif not 1 <= every <= 1000:
            _error(form, "recurrence_every", "Must be between 1 and 1000.")
    tz = form.recurrence_time_zone.data or ""
    if tz not in time_zones():
        _error(form, "recurrence_time_zone",
               f"Unknown time zone \u201c{tz}\u201d. Use an IANA name such as Europe/Berlin or UTC."
               if tz else "Choose a time zone, such as Europe/Berlin or UTC.")
    if form.next_occurrence.data is None and not form.next_occurrence.errors:
        _error(form, "next_occurrence", "A recurring ticket needs the date and time of its next occurrence.")
    elif form.next_occurrence.data is not None and not year_in_range(form.next_occurrence.data):
        _error(form, "next_occurrence", YEARS_MESSAGE)
    ends = form.recurrence_ends.data
    end_date: date | None = form.recurrence_end_date.data if ends == "on_date" else None
    count: int | None = form.recurrence_count.data if ends == "after_count" else None
    if ends == "on_date" and end_date is None and not form.recurrence_end_date.errors:
        _error(form, "recurrence_end_date", "Enter the last day the ticket may repeat on.")
    if ends == "after_count" and not form.recurrence_count.errors:
        if count is None:
            _error(form, "recurrence_count", "Enter how many times it repeats.")
        elif not 1 <= count <= MAX_COUNT:
            _error(form, "recurrence_count", f"Must be between 1 and {MAX_COUNT:,}.")
    lead = form.recurrence_lead_hours.data
    if lead is not None and not 0 <= lead <= MAX_LEAD_HOURS and not form.recurrence_lead_hours.errors:
        _error(form, "recurrence_lead_hours", f"Must be between 0 and {MAX_LEAD_HOURS} hours (a year).")
    if form.recurrence_catch_up.data == "all" and form.recurrence_open_policy.data != "always":
        _error(form, "recurrence_catch_up", "Creating every missed ticket only works with "
                                            "\u201cAlways create a new ticket\u201d.")
    mode = form.recurrence_monthly_mode.data or "day"
    rule = Rule(
        interval=form.recurrence_interval.data, every=every or 1, weekdays=tuple(form.recurrence_weekdays.data or ()),
        monthly_mode=mode, ordinal=form.recurrence_ordinal.data if mode == "ordinal" else None,
        ordinal_weekday=form.recurrence_ordinal_weekday.data if mode == "ordinal" else None,
        weekdays_only=bool(form.recurrence_weekdays_only.data), business_days=form.recurrence_business_days.data or "",
        end_date=end_date,
    )
    for name, message in rule.problems().items():
        if not form[name].errors:
            _error(form, name, message)
    if any(form[name].errors for name in RECURRENCE_FIELDS):
        return None
    start = to_utc(form.next_occurrence.data, ZoneInfo(tz))
    if end_date is not None and end_date < form.next_occurrence.data.date():
        _error(form, "recurrence_end_date", "The end date is before the first occurrence.")
        return None
    values = {
        "recurrence_interval": rule.interval, "recurrence_every": rule.every, "recurrence_time_zone": tz,
        "recurrence_weekdays": ",".join(str(d) for d in sorted(set(rule.weekdays))),
        "recurrence_monthly_mode": mode, "recurrence_ordinal": rule.ordinal,
        "recurrence_ordinal_weekday": rule.ordinal_weekday, "recurrence_weekdays_only": rule.weekdays_only,
        "recurrence_business_days": rule.business_days, "recurrence_end_date": end_date,
        "recurrence_count": count, "recurrence_lead_hours": lead or 0,
        "recurrence_open_policy": form.recurrence_open_policy.data,
        "recurrence_catch_up": form.recurrence_catch_up.data,
    }
    series = Series(rule=rule, anchor=start, tz=tz, count=count)
    if series.first() is None:
        _error(form, "recurrence_end_date", "The rule has no occurrence on or before the end date.")
        return None
    return Recurrence(values=values, start=start, series=series)


def fill_from(form: RecurrenceForm, ticket) -> None:
    """Show a template's rule in the form (the next occurrence in the template's own zone)."""
    rec = ticket.recurrence
    form.is_recurring.data = True
    for name in RECURRENCE_FIELDS:
        if name not in ("recurrence_weekdays", "recurrence_ends", "next_occurrence"):
            form[name].data = getattr(rec, name)
    form.recurrence_weekdays.data = list(parse_weekdays(rec.recurrence_weekdays))
    form.recurrence_ordinal.data = rec.recurrence_ordinal or 1
    form.recurrence_ordinal_weekday.data = rec.recurrence_ordinal_weekday or 0
    form.recurrence_ends.data = ("on_date" if rec.recurrence_end_date else
                                 "after_count" if rec.recurrence_count else "never")
    shown = rec.next_occurrence or rec.recurrence_anchor
    form.next_occurrence.data = shown.astimezone(ZoneInfo(rec.recurrence_time_zone)).replace(tzinfo=None)


def suggested_start(now: datetime, tz: str) -> datetime:
    """A sensible default for a new template: tomorrow at 09:00 local time."""
    local = now.astimezone(ZoneInfo(tz)) + timedelta(days=1)
    return local.replace(hour=9, minute=0, second=0, microsecond=0, tzinfo=None)
