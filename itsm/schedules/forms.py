"""The periodic task form: one form, four schedule kinds (the page shows the chosen kind's fields)."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import current_app
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    DecimalField,
    IntegerField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional

from itsm.formutil import options, sane_year, strip
from itsm.schedules.models import PERIOD_CHOICES
from itsm.schedules.ticks import SOLAR_EVENTS
from itsm.schedules.validation import Definition, ValidationError, parse_json
from itsm.zones import to_utc

KINDS = (("interval", "Interval"), ("crontab", "Crontab"), ("solar", "Solar event"), ("clocked", "Once, at a time"))
LOCAL_FORMAT = "%Y-%m-%dT%H:%M"


def local_to_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return to_utc(value, ZoneInfo(current_app.config["TIME_ZONE"]))


def utc_to_local(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(ZoneInfo(current_app.config["TIME_ZONE"])).replace(tzinfo=None)


class PeriodicTaskForm(FlaskForm):
    name = StringField("Name", filters=[strip], validators=[DataRequired(), Length(max=200)])
    task = SelectField("Task")
    kind = SelectField("Schedule", choices=options(KINDS), default="crontab")
    every = IntegerField("Every", validators=[Optional()])
    period = SelectField("Period", choices=options((p, p) for p in PERIOD_CHOICES), default="minutes")
    minute = StringField("Minute", filters=[strip], default="0", validators=[Length(max=240)])
    hour = StringField("Hour", filters=[strip], default="*", validators=[Length(max=96)])
    day_of_month = StringField("Day of month", filters=[strip], default="*", validators=[Length(max=124)])
    month_of_year = StringField("Month", filters=[strip], default="*", validators=[Length(max=64)])
    day_of_week = StringField("Day of week", filters=[strip], default="*", validators=[Length(max=64)])
    timezone = StringField("Time zone", filters=[strip], validators=[Length(max=64)])
    event = SelectField("Event", choices=options((e, e.replace("_", " ")) for e in SOLAR_EVENTS), default="sunrise")
    latitude = DecimalField("Latitude", places=6, validators=[Optional()])
    longitude = DecimalField("Longitude", places=6, validators=[Optional()])
    clocked_time = DateTimeLocalField("Run at", format=LOCAL_FORMAT, validators=[Optional(), sane_year])
    args = TextAreaField("Positional arguments (JSON list)", default="[]", validators=[Length(max=10000)])
    kwargs = TextAreaField("Keyword arguments (JSON object)", default="{}", validators=[Length(max=10000)])
    queue = SelectField("Queue")
    start_time = DateTimeLocalField("Start time", format=LOCAL_FORMAT, validators=[Optional(), sane_year])
    expires = DateTimeLocalField("Expires", format=LOCAL_FORMAT, validators=[Optional(), sane_year])
    expire_seconds = IntegerField("Expire seconds", validators=[Optional()])
    one_off = BooleanField("One-off (run once, then disable)")
    enabled = BooleanField("Enabled", default=True)
    description = TextAreaField("Description", validators=[Length(max=2000)])
    misfire_policy = SelectField("After downtime", default="once", choices=options(
        [("once", "Run once for the latest missed time"), ("skip", "Skip missed times"),
         ("all", "Run every missed time (within the catch-up window)")]))
    catchup_window_seconds = IntegerField("Catch-up window (seconds)", default=86400, validators=[Optional()])
    overlap_policy = SelectField("While the previous run is still running", default="skip", choices=options(
        [("skip", "Skip this time"), ("allow", "Run anyway")]))
    jitter_seconds = IntegerField("Random delay up to (seconds)", default=0, validators=[Optional()])

    def fill_choices(self, task_names: list[str], queues: tuple[str, ...]) -> None:
        self.task.choices = options((n, n) for n in task_names)
        self.queue.choices = options([("", "The task's own queue")] + [(q, q) for q in queues])
        if not self.is_submitted() and not self.timezone.data:  # a zone cleared and submitted is an error
            self.timezone.data = current_app.config["TIME_ZONE"]

    def to_definition(self) -> Definition:
        """Plain values; JSON parse errors are kept in ``json_errors`` so every field is checked at once."""
        errors = {}
        try:
            args = parse_json(self.args.data, list, "args")
        except ValidationError as err:
            errors.update(err.errors)
            args = []
        try:
            kwargs = parse_json(self.kwargs.data, dict, "kwargs")
        except ValidationError as err:
            errors.update(err.errors)
            kwargs = {}
        self.json_errors = errors
        return Definition(
            name=self.name.data or "", task=self.task.data or "", kind=self.kind.data, every=self.every.data,
            period=self.period.data,
            crontab={n: getattr(self, n).data or "" for n in
                     ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")},
            timezone=self.timezone.data, event=self.event.data,
            latitude=float(self.latitude.data) if self.latitude.data is not None else None,
            longitude=float(self.longitude.data) if self.longitude.data is not None else None,
            clocked_time=local_to_utc(self.clocked_time.data), args=args, kwargs=kwargs,
            queue=self.queue.data or None, start_time=local_to_utc(self.start_time.data),
            expires=local_to_utc(self.expires.data), expire_seconds=self.expire_seconds.data,
            one_off=self.one_off.data, enabled=self.enabled.data, description=self.description.data or "",
            misfire_policy=self.misfire_policy.data,
            catchup_window_seconds=self.catchup_window_seconds.data or 86400,
            overlap_policy=self.overlap_policy.data, jitter_seconds=self.jitter_seconds.data or 0,
        )

    def load(self, d: Definition) -> None:
        for name in ("name", "task", "kind", "every", "period", "timezone", "event", "latitude", "longitude",
                     "expire_seconds", "one_off", "enabled", "description", "misfire_policy",
                     "catchup_window_seconds", "overlap_policy", "jitter_seconds"):
            getattr(self, name).data = getattr(d, name)
        for name, value in (d.crontab or {}).items():
            getattr(self, name).data = value
        self.queue.data = d.queue or ""
        self.args.data = json.dumps(d.args)
        self.kwargs.data = json.dumps(d.kwargs)
        self.clocked_time.data = utc_to_local(d.clocked_time)
        self.start_time.data = utc_to_local(d.start_time)
        self.expires.data = utc_to_local(d.expires)

    def add_errors(self, errors: dict[str, str]) -> None:
        for name, message in errors.items():
            getattr(self, name, self.name).errors = [*getattr(self, name, self.name).errors, message]


class OneOffForm(FlaskForm):
    task = SelectField("Task")
    run_at = DateTimeLocalField("Run at", format=LOCAL_FORMAT, validators=[DataRequired(), sane_year])
    args = StringField("Arguments (JSON list)", default="[]", validators=[Length(max=2000)])
