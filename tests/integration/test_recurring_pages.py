"""Recurring tickets through the pages: the form, its checks, the preview, the template page, holidays."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from itsm.extensions import db
from itsm.recurring.models import Holiday, RecurringTicketRun
from itsm.recurring.processor import process_due
from itsm.schedules import sync
from itsm.schedules.catalog import entries
from itsm.tickets.models import Ticket, TicketEvent
from tests import factories


def count() -> int:
    return db.session.scalar(sa.select(sa.func.count(Ticket.id)))


@pytest.fixture
def form(ids):
    def build(**overrides) -> dict:
        values = {"title": "Weekly patch check {date}", "description": "Run the patch report", "priority": "2",
                  "column_id": str(ids.columns["New"]), "assignee_id": "0", "requester_email": "",
                  "category": "Patching", "is_recurring": "y", "recurrence_every": "1",
                  "recurrence_interval": "weekly", "recurrence_weekdays": ["0"],
                  "next_occurrence": "2027-03-22T09:00", "recurrence_time_zone": "Europe/Berlin",
                  "recurrence_monthly_mode": "day", "recurrence_ordinal": "1", "recurrence_ordinal_weekday": "0",
                  "recurrence_business_days": "", "recurrence_lead_hours": "0", "recurrence_ends": "never",
                  "recurrence_end_date": "", "recurrence_count": "", "recurrence_open_policy": "always",
                  "recurrence_catch_up": "latest"}
        values.update(overrides)
        return {k: v for k, v in values.items() if v is not None}
    return build


def test_create_a_recurring_ticket(app, client, auth, form):
    auth.login()
    response = auth.post("/tickets/new", form())
    assert response.status_code == 302, response.get_data(as_text=True)
    with app.app_context():
        template = db.session.scalar(sa.select(Ticket))
        assert response.location.endswith(f"/tickets/{template.id}")
        rec = template.recurrence
        assert template.is_recurring and template.column_id is None and rec.recurrence_active
        assert (rec.recurrence_interval, rec.recurrence_every, rec.recurrence_weekdays) == ("weekly", 1, "0")
        # 09:00 in Berlin (CET, UTC+1) is 08:00 UTC; the creation moment is the occurrence (no lead).
        assert rec.next_occurrence == datetime(2027, 3, 22, 8, 0, tzinfo=UTC) == rec.recurrence_due_at
        assert [e.kind for e in db.session.scalars(sa.select(TicketEvent).order_by(TicketEvent.id))] == [
            "created", "scheduled"]
    page = client.get(response.location).get_data(as_text=True)
    assert "Every week on Monday at 09:00 (Europe/Berlin)" in page
    assert "Mon 2027-03-29 09:00 Europe/Berlin" in page  # the next five in the template's zone, across DST
    # Templates stay off the board and out of the ticket list; they have their own list.
    assert "Weekly patch check" not in client.get("/board").get_data(as_text=True)
    assert "Weekly patch check" not in client.get("/tickets").get_data(as_text=True)
    assert "Weekly patch check" in client.get("/tickets?archived=recurring").get_data(as_text=True)


def test_next_occurrence_moves_to_the_first_time_that_fits_the_rule(app, auth, form):
    auth.login()
    response = auth.post("/tickets/new", form(next_occurrence="2027-03-23T09:00"))  # a Tuesday; rule: Mondays
    assert response.status_code == 302
    with app.app_context():
        template = db.session.scalar(sa.select(Ticket))
        assert template.recurrence.next_occurrence == datetime(2027, 3, 29, 7, 0, tzinfo=UTC)  # Monday, CEST


@pytest.mark.parametrize("overrides, field, message", [
    ({"recurrence_every": "0"}, "recurrence_every", "between 1 and 1000"),
    ({"recurrence_every": "100000"}, "recurrence_every", "between 1 and 1000"),
    ({"recurrence_every": "often"}, "recurrence_every", "Not a valid integer"),
    ({"next_occurrence": ""}, "next_occurrence", "needs the date and time of its next occurrence"),
    ({"next_occurrence": "tomorrow"}, "next_occurrence", "Not a valid datetime"),
    ({"recurrence_time_zone": "Mars/Olympus"}, "recurrence_time_zone", "Unknown time zone"),
    ({"recurrence_time_zone": "localtime"}, "recurrence_time_zone", "Unknown time zone"),  # the host's, no place's
    ({"recurrence_time_zone": "Factory"}, "recurrence_time_zone", "Unknown time zone"),
    ({"recurrence_ends": "on_date", "recurrence_end_date": "2027-01-01"}, "recurrence_end_date",
     "before the first occurrence"),
    ({"recurrence_ends": "after_count", "recurrence_count": "0"}, "recurrence_count", "between 1 and"),
    ({"recurrence_ends": "after_count", "recurrence_count": ""}, "recurrence_count", "how many times"),
    ({"recurrence_interval": "monthly", "recurrence_monthly_mode": "ordinal", "recurrence_ordinal": "9"},
     "recurrence_ordinal", "Not a valid choice"),
    ({"recurrence_open_policy": "skip_open", "recurrence_catch_up": "all"}, "recurrence_catch_up", "only works"),
    ({"recurrence_lead_hours": "-3"}, "recurrence_lead_hours", "between 0 and"),
    ({"recurrence_interval": "hourly"}, "recurrence_interval", "Not a valid choice"),
])
def test_bad_rules_are_field_errors_and_save_nothing(app, auth, form, overrides, field, message):
    auth.login()
    response = auth.post("/tickets/new", form(**overrides))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    errors = re.findall(rf'<p class="error" id="{field}-error">([^<]*)</p>', page)
    assert any(message in e for e in errors), (errors, page[page.find("has-error") - 300:][:900])
    with app.app_context():
        assert count() == 0


def test_a_plain_ticket_ignores_the_hidden_recurrence_controls(app, auth, form):
    auth.login()
    response = auth.post("/tickets/new", form(is_recurring=None, recurrence_every="often", next_occurrence=""))
    assert response.status_code == 302
    with app.app_context():
        ticket = db.session.scalar(sa.select(Ticket))
        assert not ticket.is_recurring and ticket.column_id is not None and ticket.recurrence is None


def error_fields(page: str) -> set[str]:
    return set(re.findall(r'<p class="error" id="([a-z_]+)-error">', page))


def template_rule(app) -> dict:
    with app.app_context():
        rec = db.session.scalar(sa.select(Ticket)).recurrence
        return {c: getattr(rec, c) for c in ("recurrence_interval", "recurrence_weekdays", "recurrence_monthly_mode",
                                             "recurrence_ordinal", "recurrence_ordinal_weekday",
                                             "recurrence_weekdays_only", "recurrence_end_date", "recurrence_count")}


def test_weekdays_ticked_under_weekly_are_dropped_when_the_unit_becomes_monthly(app, client, auth, form):
    """Mon and Thu ticked, then "monthly" chosen: the hidden checkboxes still post (always so without
    JavaScript), and neither the preview nor the save holds them against the user."""
    auth.login()
    posted = form(recurrence_interval="monthly", recurrence_weekdays=["0", "3"], next_occurrence="2027-03-04T09:00")
    query = {k: v for k, v in posted.items() if k.startswith("recurrence_") or k == "next_occurrence"}
    preview = client.get("/tickets/recurrence-preview", query_string=query)
    assert preview.status_code == 200, preview.get_data(as_text=True)
    assert "weekly rules only" not in preview.get_data(as_text=True)
    assert re.findall(r"<time[^>]*>([^<]*)</time>", preview.get_data(as_text=True))[:2] == [
        "Thu 2027-03-04 09:00 Europe/Berlin", "Sun 2027-04-04 09:00 Europe/Berlin"]  # the 4th, no weekdays
    response = auth.post("/tickets/new", posted)
    assert response.status_code == 302, error_fields(response.get_data(as_text=True))
    rule = template_rule(app)
    assert (rule["recurrence_interval"], rule["recurrence_weekdays"], rule["recurrence_monthly_mode"]) == (
        "monthly", "", "day")


def test_a_monthly_option_is_dropped_when_the_unit_changes(app, auth, form):
    auth.login()
    response = auth.post("/tickets/new", form(
        recurrence_interval="daily", recurrence_weekdays=["1"], recurrence_weekdays_only="y",
        recurrence_monthly_mode="ordinal", recurrence_ordinal="-1", recurrence_ordinal_weekday="4"))
    assert response.status_code == 302, error_fields(response.get_data(as_text=True))
    rule = template_rule(app)
    assert rule == {"recurrence_interval": "daily", "recurrence_weekdays": "", "recurrence_monthly_mode": "day",
                    "recurrence_ordinal": None, "recurrence_ordinal_weekday": None,
                    "recurrence_weekdays_only": True, "recurrence_end_date": None, "recurrence_count": None}


@pytest.mark.parametrize("overrides", [
    {"recurrence_interval": "weekly", "recurrence_weekdays_only": "bogus", "recurrence_monthly_mode": "nonsense"},
    {"recurrence_interval": "weekly", "recurrence_monthly_mode": "last_day"},  # left behind by "monthly"
    {"recurrence_interval": "yearly", "recurrence_weekdays": ["0", "3"], "recurrence_monthly_mode": "ordinal",
     "recurrence_ordinal": "-1", "recurrence_ordinal_weekday": "4", "recurrence_weekdays_only": "y"},
    {"recurrence_interval": "monthly", "recurrence_weekdays": ["9", "x"], "recurrence_ordinal": "x"},
    {"recurrence_interval": "monthly", "recurrence_monthly_mode": "last_day", "recurrence_ordinal": "77",
     "recurrence_ordinal_weekday": "-4"},
    {"recurrence_ends": "never", "recurrence_end_date": "not a date", "recurrence_count": "many"},
    {"recurrence_ends": "on_date", "recurrence_end_date": "2027-12-31", "recurrence_count": "0"},
    {"recurrence_ends": "after_count", "recurrence_end_date": "1999-01-01", "recurrence_count": "3"},
])
def test_hidden_controls_never_block_the_save(app, auth, form, overrides):
    auth.login()
    response = auth.post("/tickets/new", form(**overrides))
    assert response.status_code == 302, error_fields(response.get_data(as_text=True))
    rule = template_rule(app)
    assert rule["recurrence_end_date"] == (datetime(2027, 12, 31).date() if overrides.get("recurrence_ends")
                                           == "on_date" else None)
    assert rule["recurrence_count"] == (3 if overrides.get("recurrence_ends") == "after_count" else None)


def test_errors_are_shown_on_visible_fields_only_and_hidden_choices_come_back_cleared(app, auth, form):
    """A save that fails for a visible reason re-renders the form: the choices that do not apply come
    back cleared (unticked, empty) and carry no error of their own."""
    auth.login()
    response = auth.post("/tickets/new", form(
        recurrence_interval="monthly", recurrence_weekdays=["0", "3"], recurrence_time_zone="Mars/Olympus",
        recurrence_ends="never", recurrence_end_date="garbage", recurrence_count="-5"))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert error_fields(page) == {"recurrence_time_zone"}
    assert not re.search(r'name="recurrence_weekdays"[^>]*checked', page)
    assert 'value="garbage"' not in page and 'value="-5"' not in page
    with app.app_context():
        assert count() == 0


def test_without_javascript_both_end_fields_show_and_only_the_chosen_one_is_checked(app, client, auth, form):
    auth.login()
    page = client.get("/tickets/new").get_data(as_text=True)
    for name in ("recurrence_end_date", "recurrence_count"):
        assert re.search(rf'<div class="field [^"]*for-ends[^"]*">\s*<label for="{name}"', page), name
    assert " hidden" not in page[page.find("for-ends"):page.find("ends-hint")]
    response = auth.post("/tickets/new", form(recurrence_ends="on_date", recurrence_end_date="",
                                              recurrence_count="oops"))
    assert response.status_code == 400
    assert error_fields(response.get_data(as_text=True)) == {"recurrence_end_date"}


def test_preview_endpoint(client, auth, form):
    auth.login()
    query = {k: v for k, v in form(recurrence_interval="monthly", recurrence_weekdays=None,
                                   recurrence_monthly_mode="ordinal", recurrence_ordinal="-1",
                                   recurrence_ordinal_weekday="4", next_occurrence="2027-01-01T09:00").items()
             if k.startswith("recurrence_") or k == "next_occurrence"}
    response = client.get("/tickets/recurrence-preview", query_string=query)
    assert response.status_code == 200
    times = re.findall(r"<time[^>]*>([^<]*)</time>", response.get_data(as_text=True))
    assert times == [f"Fri 2027-{day} 09:00 Europe/Berlin" for day in ("01-29", "02-26", "03-26", "04-30", "05-28")]
    bad = client.get("/tickets/recurrence-preview", query_string={**query, "recurrence_time_zone": "Nowhere"})
    assert bad.status_code == 400 and "Unknown time zone" in bad.get_data(as_text=True)


def test_preview_stops_at_the_end_of_a_counted_series(client, auth, form):
    auth.login()
    query = {k: v for k, v in form(recurrence_ends="after_count", recurrence_count="2").items()
             if k.startswith("recurrence_") or k == "next_occurrence"}
    page = client.get("/tickets/recurrence-preview", query_string=query).get_data(as_text=True)
    assert len(re.findall(r"<time", page)) == 2


def test_preview_button_works_without_javascript_and_saves_nothing(app, auth, form):
    auth.login()
    response = auth.post("/tickets/new", form(preview="1"))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Mon 2027-03-22 09:00 Europe/Berlin" in page and len(re.findall(r"<time", page)) == 5
    with app.app_context():
        assert count() == 0


def test_template_page_lists_its_occurrences(app, client, auth):
    start = datetime(2026, 11, 2, 9, tzinfo=UTC)
    with app.app_context():
        template = factories.make_template("Check {date}", start=start, recurrence_interval="weekly")
        for week in range(3):
            process_due(start + timedelta(weeks=week, minutes=1))
    auth.login()
    page = client.get(f"/tickets/{template.id}").get_data(as_text=True)
    assert "Tickets opened by this template" in page
    assert [m for m in re.findall(r">(Check [0-9-]+)</a>", page)] == [
        "Check 2026-11-16", "Check 2026-11-09", "Check 2026-11-02"]
    with app.app_context():
        occurrence = db.session.scalar(sa.select(Ticket).where(Ticket.template_id == template.id).limit(1))
    detail = client.get(f"/tickets/{occurrence.id}").get_data(as_text=True)
    assert f"from template #{template.id}" in detail


def test_edit_a_template_and_pause_it(app, client, auth, form):
    with app.app_context():
        template = factories.make_template("Backup check", start=datetime(2027, 1, 4, 9, tzinfo=UTC),
                                           recurrence_interval="weekly")
    auth.login()
    page = client.get(f"/tickets/{template.id}/edit").get_data(as_text=True)
    assert 'value="2027-01-04T09:00"' in page and 'name="column_id"' not in page
    response = auth.post(f"/tickets/{template.id}/edit", form(
        title="Backup check", recurrence_time_zone="UTC", recurrence_interval="monthly", recurrence_weekdays=None,
        recurrence_monthly_mode="last_day", next_occurrence="2027-01-04T09:00"))
    assert response.status_code == 302, response.get_data(as_text=True)
    with app.app_context():
        edited = db.session.get(Ticket, template.id)
        assert edited.recurrence.recurrence_monthly_mode == "last_day" and edited.column_id is None
        assert edited.recurrence.next_occurrence == datetime(2027, 1, 31, 9, tzinfo=UTC)
    assert auth.post(f"/tickets/{template.id}/pause").status_code == 302
    with app.app_context():
        assert not db.session.get(Ticket, template.id).recurrence.recurrence_active
        assert process_due(datetime(2027, 2, 1, tzinfo=UTC)).processed == 0
    assert "paused" in client.get(f"/tickets/{template.id}").get_data(as_text=True)
    assert auth.post(f"/tickets/{template.id}/resume").status_code == 302
    with app.app_context():
        resumed = db.session.get(Ticket, template.id)
        assert resumed.recurrence.recurrence_active


def test_a_template_cannot_be_moved_onto_the_board(app, auth, ids):
    with app.app_context():
        template = factories.make_template(start=datetime(2027, 1, 4, 9, tzinfo=UTC), recurrence_interval="weekly")
    auth.login()
    response = auth.post(f"/tickets/{template.id}/move", {"column_id": str(ids.columns["New"])})
    assert response.status_code == 400


def test_automation_page_shows_recurring_health(app, client, auth):
    now = datetime.now(UTC)
    auth.login()
    with app.app_context():
        assert "No periodic job runs process_recurring_tickets" in client.get("/admin/automation").get_data(
            as_text=True)
        sync.sync(entries())
        factories.make_template("Soon", start=now + timedelta(hours=2), recurrence_interval="daily")
        db.session.add(RecurringTicketRun(started_at=now - timedelta(hours=3), finished_at=now - timedelta(hours=3),
                                          status="success", total_processed=4, total_created=3, duration_seconds=0.25))
        db.session.add(RecurringTicketRun(started_at=now - timedelta(hours=2), finished_at=now - timedelta(hours=2),
                                          status="error", error_message="OperationalError: server closed",
                                          duration_seconds=0.5))
        db.session.commit()
    page = client.get("/admin/automation").get_data(as_text=True)
    section = page[page.index('id="recurring-health"'):]
    assert "<svg" in section and section.count("<rect") == 4  # two hours with a run: two bars each
    assert "OperationalError: server closed" in section and "Soon" in section
    assert 'role="alert"' in section and "more than twice the schedule" in section  # last success 3 h ago
    with app.app_context():
        db.session.add(RecurringTicketRun(started_at=now - timedelta(minutes=1), finished_at=now,
                                          status="success", duration_seconds=0.1))
        db.session.commit()
    page = client.get("/admin/automation").get_data(as_text=True)
    assert "more than twice the schedule" not in page


def test_holidays_admin(app, client, auth):
    auth.login()
    assert auth.post("/admin/holidays", {"day": "2026-12-25", "name": "Christmas"}).status_code == 302
    duplicate = auth.post("/admin/holidays", {"day": "2026-12-25", "name": "Again"})
    assert duplicate.status_code == 400 and "already a holiday" in duplicate.get_data(as_text=True)
    bad = auth.post("/admin/holidays", {"day": "soon"})
    assert bad.status_code == 400
    with app.app_context():
        holiday = db.session.scalar(sa.select(Holiday))
        assert holiday.name == "Christmas"
    assert "Christmas" in client.get("/admin/holidays").get_data(as_text=True)
    assert auth.post(f"/admin/holidays/{holiday.id}/delete").status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Holiday.id))) == 0
