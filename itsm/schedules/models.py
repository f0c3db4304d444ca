"""Periodic tasks kept in the database, with django-celery-beat's schedule kinds."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Index, UniqueConstraint, event

from itsm.dbtypes import UTCDateTime, one_of, utcnow
from itsm.extensions import db
from itsm.schedules import validation
from itsm.schedules.validation import MISFIRE_POLICIES, OVERLAP_POLICIES, PERIOD_CHOICES, ValidationError

__all__ = ["MISFIRE_POLICIES", "OVERLAP_POLICIES", "PERIOD_CHOICES"]
FIRING_STATUSES = ("running", "retrying", "succeeded", "failed", "lost", "skipped")
SOURCES = ("registry", "admin")


class IntervalSchedule(db.Model):
    __tablename__ = "interval_schedules"
    # The bound per period is SQL; SQLite enforces the same rule with triggers (migration 0009).
    __table_args__ = (CheckConstraint("every >= 1", name="every"),
                      CheckConstraint(validation.interval_bound_sql(), name="every_bound"),
                      CheckConstraint(one_of("period", PERIOD_CHOICES), name="period"))

    id = db.Column(db.Integer, primary_key=True)
    every = db.Column(db.Integer, nullable=False)
    period = db.Column(db.String(24), nullable=False)


class CrontabSchedule(db.Model):
    __tablename__ = "crontab_schedules"

    id = db.Column(db.Integer, primary_key=True)
    minute = db.Column(db.String(240), nullable=False, default="*")
    hour = db.Column(db.String(96), nullable=False, default="*")
    day_of_week = db.Column(db.String(64), nullable=False, default="*")
    day_of_month = db.Column(db.String(124), nullable=False, default="*")
    month_of_year = db.Column(db.String(64), nullable=False, default="*")
    timezone = db.Column(db.String(64), nullable=False, default="UTC")

    @property
    def expression(self) -> str:
        return f"{self.minute} {self.hour} {self.day_of_month} {self.month_of_year} {self.day_of_week}"


class SolarSchedule(db.Model):
    __tablename__ = "solar_schedules"

    id = db.Column(db.Integer, primary_key=True)
    event = db.Column(db.String(24), nullable=False)
    latitude = db.Column(db.Numeric(9, 6), nullable=False)
    longitude = db.Column(db.Numeric(9, 6), nullable=False)


class ClockedSchedule(db.Model):
    __tablename__ = "clocked_schedules"

    id = db.Column(db.Integer, primary_key=True)
    clocked_time = db.Column(UTCDateTime, nullable=False)


class PeriodicTask(db.Model):
    __tablename__ = "periodic_tasks"
    __table_args__ = (
        CheckConstraint(
            "(CASE WHEN interval_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN crontab_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN solar_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN clocked_id IS NULL THEN 0 ELSE 1 END) = 1",
            name="one_schedule"),
        CheckConstraint("expires IS NULL OR expire_seconds IS NULL", name="one_expiry"),
        CheckConstraint(one_of("source", SOURCES), name="source"),
        CheckConstraint(one_of("misfire_policy", MISFIRE_POLICIES), name="misfire"),
        CheckConstraint(one_of("overlap_policy", OVERLAP_POLICIES), name="overlap"),
    )

    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(200), nullable=False, unique=True)
    task = db.Column(db.String(200), nullable=False)
    interval_id = db.Column(db.Integer, db.ForeignKey("interval_schedules.id"), nullable=True)
    crontab_id = db.Column(db.Integer, db.ForeignKey("crontab_schedules.id"), nullable=True)
    solar_id = db.Column(db.Integer, db.ForeignKey("solar_schedules.id"), nullable=True)
    clocked_id = db.Column(db.Integer, db.ForeignKey("clocked_schedules.id"), nullable=True)
    args = db.Column(db.JSON, nullable=False, default=list)
    kwargs = db.Column(db.JSON, nullable=False, default=dict)
    queue = db.Column(db.String(40), nullable=True)
    start_time = db.Column(UTCDateTime, nullable=True)
    expires = db.Column(UTCDateTime, nullable=True)
    expire_seconds = db.Column(db.Integer, nullable=True)
    one_off = db.Column(db.Boolean, nullable=False, default=False)
    enabled = db.Column(db.Boolean, nullable=False, default=True)
    description = db.Column(db.Text, nullable=False, default="")
    source = db.Column(db.String(16), nullable=False, default="admin")
    misfire_policy = db.Column(db.String(8), nullable=False, default="once")
    catchup_window_seconds = db.Column(db.Integer, nullable=False, default=86400)
    overlap_policy = db.Column(db.String(8), nullable=False, default="skip")
    jitter_seconds = db.Column(db.Integer, nullable=False, default=0)
    # Registry rows: the code's definition as last synced, and whether an admin changed the row.
    default_definition = db.Column(db.JSON, nullable=True)
    overridden = db.Column(db.Boolean, nullable=False, default=False)
    # Run bookkeeping (not part of the definition: writing these does not wake the scheduler).
    last_run_at = db.Column(UTCDateTime, nullable=True)
    total_run_count = db.Column(db.Integer, nullable=False, default=0)
    date_changed = db.Column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    # Scheduler state: the tick handed to rq-scheduler, the last one handed over to a queue.
    next_tick_at = db.Column(UTCDateTime, nullable=True)
    last_tick_at = db.Column(UTCDateTime, nullable=True)
    scheduled_hash = db.Column(db.String(64), nullable=True)
    # Set by the scheduler when it cannot evaluate the schedule (the task is skipped); cleared once it can.
    invalid_reason = db.Column(db.String(300), nullable=True)
    invalid_since = db.Column(UTCDateTime, nullable=True)

    interval = db.relationship(IntervalSchedule, lazy="joined")
    crontab = db.relationship(CrontabSchedule, lazy="joined")
    solar = db.relationship(SolarSchedule, lazy="joined")
    clocked = db.relationship(ClockedSchedule, lazy="joined")

    @property
    def kind(self) -> str:
        for kind in ("interval", "crontab", "solar", "clocked"):
            if getattr(self, f"{kind}_id") is not None or getattr(self, kind) is not None:
                return kind
        return "none"


def _refuse(problems: dict[str, str]) -> None:
    if problems:
        raise ValidationError(problems)


# What SQL cannot check (a crontab that never fires, a zone that is not a place) is checked on every
# flush, with the rules the form and sync use: nothing the application writes stores such a schedule.
@event.listens_for(IntervalSchedule, "before_insert")
@event.listens_for(IntervalSchedule, "before_update")
def _check_interval(mapper, connection, target: IntervalSchedule) -> None:
    _refuse(validation.interval_problems(target.every, target.period))


@event.listens_for(CrontabSchedule, "before_insert")
@event.listens_for(CrontabSchedule, "before_update")
def _check_crontab(mapper, connection, target: CrontabSchedule) -> None:
    # A field left unset takes its column default ("*", UTC) in the INSERT itself.
    fields = {name: "*" if getattr(target, name) is None else getattr(target, name)
              for name in validation.CRON_FIELDS}
    zone = "UTC" if target.timezone is None else target.timezone
    _refuse(validation.crontab_problems(fields, zone, utcnow()))


@event.listens_for(SolarSchedule, "before_insert")
@event.listens_for(SolarSchedule, "before_update")
def _check_solar(mapper, connection, target: SolarSchedule) -> None:
    latitude, longitude = (None if v is None else float(v) for v in (target.latitude, target.longitude))
    _refuse(validation.solar_problems(target.event, latitude, longitude, utcnow()))


class ScheduleFiring(db.Model):
    """One tick of one periodic task, claimed once: the exactly-once guarantee lives in its unique key."""

    __tablename__ = "schedule_firings"
    __table_args__ = (
        UniqueConstraint("periodic_task_id", "tick_at", name="uq_schedule_firings_task_tick"),
        CheckConstraint(one_of("status", FIRING_STATUSES), name="status"),
        Index("ix_schedule_firings_task_status", "periodic_task_id", "status"),
    )

    id = db.Column(db.Integer, primary_key=True)
    periodic_task_id = db.Column(db.Integer, db.ForeignKey("periodic_tasks.id", ondelete="CASCADE"), nullable=False)
    tick_at = db.Column(UTCDateTime, nullable=False)
    job_id = db.Column(db.String(64), nullable=False)
    status = db.Column(db.String(16), nullable=False)
    attempt = db.Column(db.Integer, nullable=False, default=1)
    claimed_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    finished_at = db.Column(UTCDateTime, nullable=True)
    reason = db.Column(db.String(200), nullable=True)


class ScheduleState(db.Model):
    """One row whose version database triggers bump on every schedule definition change."""

    __tablename__ = "schedule_state"

    id = db.Column(db.Integer, primary_key=True)
    version = db.Column(db.Integer, nullable=False, default=0)
