"""Reconcile the code registry (itsm/schedules/catalog.py) into the periodic_tasks table."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app

from itsm.extensions import db
from itsm.schedules import service
from itsm.schedules.catalog import Entry
from itsm.schedules.models import PeriodicTask
from itsm.schedules.validation import Definition, ValidationError


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    kept_overrides: list[str] = field(default_factory=list)
    reset: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.reset or self.disabled)

    def lines(self) -> list[str]:
        out = [f"created   {n}" for n in self.created] + [f"updated   {n}" for n in self.updated]
        out += [f"reset     {n} (admin override dropped)" for n in self.reset]
        out += [f"disabled  {n} (no longer in the code)" for n in self.disabled]
        out += [f"kept      {n} (admin override; the code's default changed)" for n in self.kept_overrides]
        return out


def entry_definition(entry: Entry) -> Definition:
    d = Definition(name=entry.name, task=entry.task, kind="crontab" if entry.cron else "interval",
                   args=list(entry.args), kwargs=dict(entry.kwargs), queue=entry.queue, enabled=entry.enabled,
                   description=entry.description, misfire_policy=entry.misfire,
                   catchup_window_seconds=entry.catchup_window, overlap_policy=entry.overlap,
                   jitter_seconds=entry.jitter)
    if entry.cron:
        parts = entry.cron.split()
        if len(parts) != 5:
            parts = (parts + ["?"] * 5)[:5]
        d.crontab = dict(zip(("minute", "hour", "day_of_month", "month_of_year", "day_of_week"), parts, strict=True))
        d.timezone = entry.timezone or current_app.config["TIME_ZONE"]
    else:
        d.every, d.period = entry.every, entry.period
    return d


def sync(entries: tuple[Entry, ...], *, dry_run: bool = False, reset_overrides: bool = False) -> SyncReport:
    """Create, update and disable registry rows; admin overrides survive unless ``reset_overrides``."""
    report = SyncReport()
    rows = {r.name: r for r in db.session.scalars(db.select(PeriodicTask))}
    names = set()
    for entry in entries:
        names.add(entry.name)
        wanted = entry_definition(entry)
        wanted_json = service.definition_json(wanted)
        row = rows.get(entry.name)
        if row is None:
            service.check(wanted)
            row = PeriodicTask(source="registry")
            db.session.add(row)
            service.apply(row, wanted)
            row.default_definition = wanted_json
            report.created.append(entry.name)
            continue
        if row.source != "registry":
            raise ValidationError({"name": f"{entry.name!r} exists as an admin-made task; rename one of them."})
        default_changed = row.default_definition != wanted_json
        if row.overridden and not reset_overrides:
            if default_changed:
                service.check(wanted, row)
                row.default_definition = wanted_json
                report.kept_overrides.append(entry.name)
            continue
        current = service.definition_json(service.definition_of(row))
        if row.overridden:
            report.reset.append(entry.name)
        elif current != wanted_json:
            report.updated.append(entry.name)
        else:
            continue
        service.check(wanted, row)
        service.apply(row, wanted)
        row.default_definition = wanted_json
        row.overridden = False
    for name, row in rows.items():
        if row.source == "registry" and name not in names and row.enabled:
            row.enabled = False
            report.disabled.append(name)
    if dry_run:
        db.session.rollback()
    else:
        db.session.commit()
    return report
