"""The recurring-ticket processor on SQLite and PostgreSQL: exactly once, catch-up, policies, audit."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from itsm.extensions import db
from itsm.recurring import runs
from itsm.recurring.models import Holiday, RecurringTicketRun, TicketRecurrence
from itsm.recurring.processor import process_due
from itsm.tickets.models import Ticket, TicketEvent
from tests import factories

NOW = datetime(2026, 11, 23, 9, 0, 30, tzinfo=UTC)  # a Monday


def occurrences(template_id: int) -> list[Ticket]:
    db.session.expire_all()
    return db.session.scalars(sa.select(Ticket).where(Ticket.template_id == template_id)
                              .order_by(Ticket.occurrence_at)).all()


def reload(ticket_id: int) -> TicketRecurrence:
    """A template's schedule, fresh from the database."""
    db.session.expire_all()
    return db.session.get(TicketRecurrence, ticket_id)


def test_a_due_template_opens_one_ticket_with_its_fields(app, ids):
    with app.app_context():
        template = factories.make_template(
            "Patch check {date} ({week})", start=NOW - timedelta(seconds=30), recurrence_interval="weekly",
            recurrence_time_zone="Europe/Berlin",
            ticket_fields={"description": "Check WSUS", "priority": 3, "category": "Patching",
                           "assignee_id": ids.agent, "requester_email": "ops@example.com"})
        run_id, totals = runs.run(trigger="cli", now=NOW)
        assert (totals.processed, totals.created, totals.skipped, totals.missed) == (1, 1, 0, 0)
        [ticket] = occurrences(template.id)
        assert ticket.title == "Patch check 2026-11-23 (2026-W48)"  # filled in Europe/Berlin
        assert (ticket.description, ticket.priority, ticket.category, ticket.assignee_id, ticket.requester_email) == (
            "Check WSUS", 3, "Patching", ids.agent, "ops@example.com")
        assert ticket.column_id == ids.columns["New"] and not ticket.is_recurring and ticket.done_at is None
        assert ticket.occurrence_at == NOW - timedelta(seconds=30)
        [event] = db.session.scalars(sa.select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)).all()
        assert (event.kind, event.actor_id) == ("created", None)
        assert event.changes["template"] == [None, f"#{template.id}"]
        template = reload(template.id)
        assert template.next_occurrence == NOW - timedelta(seconds=30) + timedelta(weeks=1)
        assert template.recurrence_due_at == template.next_occurrence and template.recurrence_position == 1
        run = db.session.get(RecurringTicketRun, run_id)
        assert (run.status, run.total_processed, run.total_created, run.trigger) == ("success", 1, 1, "cli")
        assert run.finished_at >= run.started_at and run.duration_seconds >= 0


def test_runs_again_and_a_rewound_template_never_duplicate(app):
    with app.app_context():
        template = factories.make_template(start=NOW - timedelta(minutes=1), recurrence_interval="daily")
        process_due(NOW)
        assert process_due(NOW).processed == 0  # advanced: nothing is due any more
        # A stale claim, a retried job or a second scheduler looks like this: the same time again.
        db.session.execute(sa.update(TicketRecurrence).where(TicketRecurrence.ticket_id == template.id).values(
            next_occurrence=NOW - timedelta(minutes=1), recurrence_due_at=NOW - timedelta(minutes=1),
            recurrence_position=0))
        db.session.commit()
        totals = process_due(NOW)
        assert (totals.processed, totals.created, totals.skipped) == (1, 0, 1)
        assert len(occurrences(template.id)) == 1


def test_the_unique_key_is_in_the_database(app):
    with app.app_context():
        template = factories.make_template(start=NOW, recurrence_interval="daily")
        column = factories.column("New")
        for _ in range(2):
            db.session.add(Ticket(title="copy", column_id=column.id, template_id=template.id, occurrence_at=NOW))
        with pytest.raises(sa.exc.IntegrityError):
            db.session.commit()
        db.session.rollback()


def test_catch_up_after_a_ten_day_outage_opens_the_latest_only(app):
    with app.app_context():
        start = NOW - timedelta(days=10, minutes=5)
        template = factories.make_template("Daily {date}", start=start, recurrence_interval="daily")
        run_id, totals = runs.run(now=NOW)
        assert (totals.created, totals.missed, totals.skipped) == (1, 10, 10)
        [ticket] = occurrences(template.id)
        assert ticket.occurrence_at == start + timedelta(days=10) and ticket.title == f"Daily {NOW.date()}"
        template = reload(template.id)
        assert template.next_occurrence == start + timedelta(days=11) > NOW
        assert template.recurrence_position == 11
        assert db.session.get(RecurringTicketRun, run_id).missed == 10


def test_catch_up_all_opens_every_missed_ticket_up_to_the_cap(app):
    with app.app_context():
        ten = factories.make_template(start=NOW - timedelta(days=10, minutes=5), recurrence_interval="daily",
                                      recurrence_catch_up="all")
        long = factories.make_template(start=NOW - timedelta(days=150, minutes=5), recurrence_interval="daily",
                                       recurrence_catch_up="all")
        totals = process_due(NOW)
        assert len(occurrences(ten.id)) == 11
        kept = occurrences(long.id)
        assert len(kept) == 100 and kept[-1].occurrence_at == NOW - timedelta(minutes=5)  # the latest 100
        assert totals.missed == 10 + 150 and totals.skipped == 150 - 99
        assert reload(long.id).next_occurrence == NOW - timedelta(minutes=5) + timedelta(days=1)


def test_skip_while_the_previous_ticket_is_open(app, ids):
    with app.app_context():
        template = factories.make_template(start=NOW, recurrence_interval="weekly",
                                           recurrence_open_policy="skip_open")
        process_due(NOW)
        totals = process_due(NOW + timedelta(weeks=1))
        assert (totals.created, totals.skipped) == (0, 1)
        [first] = occurrences(template.id)
        first.column_id = ids.columns["Done"]
        first.done_at = NOW
        db.session.commit()
        assert process_due(NOW + timedelta(weeks=2)).created == 1
        assert [t.occurrence_at for t in occurrences(template.id)] == [NOW, NOW + timedelta(weeks=2)]


def test_close_the_previous_ticket_when_opening_the_next(app, ids):
    with app.app_context():
        template = factories.make_template(start=NOW, recurrence_interval="weekly",
                                           recurrence_open_policy="close_previous")
        process_due(NOW)
        process_due(NOW + timedelta(weeks=1))
        first, second = occurrences(template.id)
        assert first.column_id == ids.columns["Done"] and first.done_at == NOW + timedelta(weeks=1)
        assert second.column_id == ids.columns["New"] and second.done_at is None
        moved = db.session.scalar(sa.select(TicketEvent).where(TicketEvent.ticket_id == first.id,
                                                               TicketEvent.kind == "moved"))
        assert moved.changes == {"column": ["New", "Done"]} and moved.actor_id is None


def test_archived_paused_and_ended_templates_are_never_processed(app):
    with app.app_context():
        archived = factories.make_template(start=NOW - timedelta(hours=1), recurrence_interval="daily")
        paused = factories.make_template(start=NOW - timedelta(hours=1), recurrence_interval="daily")
        past_end = factories.make_template(start=NOW - timedelta(days=5), recurrence_interval="daily",
                                           recurrence_end_date=(NOW - timedelta(days=10)).date())
        archived.is_archived = True
        paused.recurrence.recurrence_active = False
        db.session.commit()
        totals = process_due(NOW)
        # The past-end template has no occurrence at all, so make_template left it without a next time.
        assert reload(past_end.id).next_occurrence is None
        assert totals.processed == 0 and totals.created == 0
        for template in (archived, paused, past_end):
            assert occurrences(template.id) == []


def test_a_counted_series_ends(app):
    with app.app_context():
        template = factories.make_template(start=NOW - timedelta(days=1, minutes=1), recurrence_interval="daily",
                                           recurrence_count=2, recurrence_catch_up="all")
        totals = process_due(NOW)
        assert (totals.created, totals.ended) == (2, 1)
        template = reload(template.id)
        assert template.next_occurrence is None and template.recurrence_due_at is None
        assert process_due(NOW + timedelta(days=5)).processed == 0


def test_an_end_date_ends_the_series(app):
    with app.app_context():
        template = factories.make_template(start=NOW, recurrence_interval="daily",
                                           recurrence_end_date=(NOW + timedelta(days=1)).date())
        process_due(NOW)
        process_due(NOW + timedelta(days=1))
        assert process_due(NOW + timedelta(days=2)).processed == 0
        assert len(occurrences(template.id)) == 2 and reload(template.id).next_occurrence is None


def test_lead_time_opens_the_ticket_early(app):
    with app.app_context():
        template = factories.make_template(start=NOW + timedelta(hours=23), recurrence_interval="weekly",
                                           recurrence_lead_hours=24)
        assert reload(template.id).recurrence_due_at == NOW - timedelta(hours=1)
        process_due(NOW)
        [ticket] = occurrences(template.id)
        assert ticket.occurrence_at == NOW + timedelta(hours=23)
        assert reload(template.id).recurrence_due_at == NOW + timedelta(hours=23, weeks=1) - timedelta(hours=24)


def test_local_time_is_kept_across_dst(app):
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 10, 19, 9, 0, tzinfo=berlin)  # DST ends on Sunday, October 25
    with app.app_context():
        template = factories.make_template(start=start, recurrence_interval="weekly",
                                           recurrence_time_zone="Europe/Berlin")
        for week in range(3):
            process_due(start + timedelta(weeks=week, hours=2))
        local = [t.occurrence_at.astimezone(berlin) for t in occurrences(template.id)]
        assert [(d.date().isoformat(), d.hour) for d in local] == [
            ("2026-10-19", 9), ("2026-10-26", 9), ("2026-11-02", 9)]
        assert [t.occurrence_at.hour for t in occurrences(template.id)] == [7, 8, 8]  # UTC moves, local does not


def test_month_end_clamps_and_returns_the_same_on_both_databases(app):
    start = datetime(2026, 1, 31, 8, 0, tzinfo=UTC)
    with app.app_context():
        template = factories.make_template(start=start, recurrence_interval="monthly")
        for when in ("2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30"):
            process_due(datetime.fromisoformat(when + "T08:00:01+00:00"))
        assert [t.occurrence_at.date().isoformat() for t in occurrences(template.id)] == [
            "2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30"]


def test_rich_rules_and_holidays(app):
    with app.app_context():
        db.session.add(Holiday(day=date(2026, 12, 25), name="Christmas"))
        db.session.commit()
        last_friday = factories.make_template(
            start=datetime(2026, 11, 1, 9, tzinfo=UTC), recurrence_interval="monthly",
            recurrence_monthly_mode="ordinal", recurrence_ordinal=-1, recurrence_ordinal_weekday=4)
        business = factories.make_template(
            start=datetime(2026, 12, 24, 9, tzinfo=UTC), recurrence_interval="daily",
            recurrence_business_days="skip", recurrence_catch_up="all")
        assert reload(last_friday.id).next_occurrence == datetime(2026, 11, 27, 9, tzinfo=UTC)
        process_due(datetime(2026, 12, 29, 10, tzinfo=UTC))
        assert [t.occurrence_at.date().isoformat() for t in occurrences(business.id)] == [
            "2026-12-24", "2026-12-28", "2026-12-29"]  # Christmas and the weekend skipped
        # Its November time was missed; catching up opens only the latest, December's last Friday.
        assert [t.occurrence_at.date().isoformat() for t in occurrences(last_friday.id)] == ["2026-12-25"]


def test_dry_run_changes_nothing(app):
    with app.app_context():
        template = factories.make_template("Check {date}", start=NOW - timedelta(minutes=1),
                                           recurrence_interval="daily")
        totals = process_due(NOW, dry_run=True)
        assert totals.planned == [(template.id, f"Check {NOW.date()}", NOW - timedelta(minutes=1))]
        assert occurrences(template.id) == [] and reload(template.id).recurrence_position == 0
        assert db.session.scalar(sa.select(sa.func.count(RecurringTicketRun.id))) == 0


def test_many_templates_in_small_batches(app):
    with app.app_context():
        ids_ = [factories.make_template(start=NOW - timedelta(minutes=i), recurrence_interval="daily").id
                for i in range(1, 12)]
        seen = []
        totals = process_due(NOW, batch_size=4, progress=lambda t: seen.append(t.processed))
        assert (totals.processed, totals.created) == (11, 11) and seen == [4, 8, 11]
        assert all(len(occurrences(i)) == 1 for i in ids_)


def test_a_failing_run_is_recorded_and_changes_nothing(app):
    with app.app_context():
        template = factories.make_template(start=NOW - timedelta(minutes=1), recurrence_interval="daily")
        db.session.execute(sa.text("DELETE FROM ticket_events"))
        db.session.execute(sa.text("DELETE FROM board_columns"))  # nowhere to open tickets
        db.session.commit()
        with pytest.raises(RuntimeError, match="no columns"):
            runs.run(now=NOW)
        run = db.session.scalar(sa.select(RecurringTicketRun))
        assert run.status == "error" and "no columns" in run.error_message and run.finished_at is not None
        assert reload(template.id).recurrence_position == 0  # the batch rolled back


def test_the_assignee_hears_of_each_new_occurrence_once(app, ids):
    from itsm.mail.models import EmailMessage

    with app.app_context():
        template = factories.make_template("Backup check {date}", start=NOW - timedelta(minutes=1),
                                           recurrence_interval="daily", ticket_fields={"assignee_id": ids.agent})
        process_due(NOW)
        process_due(NOW)  # nothing new: no second email
        [ticket] = occurrences(template.id)
        [email] = db.session.scalars(sa.select(EmailMessage)).all()
        assert (email.kind, email.to_address, email.ticket_id) == ("ticket_assigned", "agent@example.com", ticket.id)
        assert f"#{ticket.id}" in email.subject and "recurring ticket #" in email.body_text


def test_a_pass_that_stops_midway_records_what_its_committed_batches_did(app):
    """An error after two batches committed (raised between batches): the run row says error and counts
    exactly those two batches, as the tickets in the database do."""
    with app.app_context():
        for i in range(1, 12):
            factories.make_template(start=NOW - timedelta(minutes=i), recurrence_interval="daily")

        def stop(totals):
            if totals.processed >= 8:
                raise RuntimeError("stopped after two batches")

        with pytest.raises(RuntimeError, match="two batches"):
            runs.run(now=NOW, batch_size=4, progress=stop)
        run = db.session.scalar(sa.select(RecurringTicketRun))
        created = db.session.scalar(sa.select(sa.func.count(Ticket.id)).where(Ticket.template_id.is_not(None)))
        assert created == 8
        assert (run.status, run.total_processed, run.total_created, run.total_skipped) == ("error", 8, 8, 0)
