"""One bad schedule breaks nothing: every writer refuses it, and every reader of one already stored
(written by SQL, by an older version) shows it as invalid instead of failing."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from itsm.automation.admin_mail import alert_late_schedules, send_daily_digests
from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.mail.models import EmailMessage
from itsm.schedules import service
from itsm.schedules.catalog import Entry
from itsm.schedules.models import CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule
from itsm.schedules.sync import sync
from itsm.schedules.validation import Definition, ValidationError
from tests import badrows

pytestmark = pytest.mark.usefixtures("redis")


def count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


# -- every writer refuses them ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: CrontabSchedule(minute="0", hour="0", day_of_month="30", month_of_year="2", day_of_week="*",
                                 timezone="UTC"), "never fires in the next 5 years"),
        (lambda: CrontabSchedule(minute="5-1", timezone="UTC"), "runs backwards"),
        (lambda: CrontabSchedule(minute="0", timezone="localtime"), "Unknown time zone 'localtime'"),
        (lambda: IntervalSchedule(every=10**9, period="days"), "at most 3,653 days (10 years)"),
        (lambda: IntervalSchedule(every=5, period="fortnights"), "Choose one of"),
        (lambda: SolarSchedule(event="moonrise", latitude=0, longitude=0), "Choose one of"),
    ],
)
def test_the_orm_refuses_a_bad_schedule_on_flush(app, make, message):
    """Whatever code path writes it, through the ORM: checked with the form's rules on every flush."""
    with app.app_context():
        db.session.add(make())
        with pytest.raises(ValidationError, match=re.escape(message)):
            db.session.flush()
        db.session.rollback()
        assert count(CrontabSchedule) == count(IntervalSchedule) == count(SolarSchedule) == 0


def test_the_orm_refuses_an_edit_that_makes_a_schedule_bad(app):
    with app.app_context():
        crontab = CrontabSchedule(minute="0", hour="3", timezone="UTC")
        db.session.add(crontab)
        db.session.commit()
        crontab.day_of_month, crontab.month_of_year = "31", "4"
        with pytest.raises(ValidationError, match="never fires"):
            db.session.commit()
        db.session.rollback()


@pytest.mark.parametrize(("every", "period"), [(10**9, "days"), (3654, "days"), (87673, "hours"), (5, "weeks")])
def test_the_database_refuses_an_interval_beyond_ten_years_from_plain_sql(app, every, period):
    with app.app_context():
        with pytest.raises(sa.exc.IntegrityError):
            db.session.execute(sa.insert(IntervalSchedule.__table__).values(every=every, period=period))
            db.session.flush()
        db.session.rollback()
        db.session.execute(sa.insert(IntervalSchedule.__table__).values(every=3653, period="days"))
        db.session.execute(sa.update(IntervalSchedule.__table__).values(period="hours", every=87672))  # fine
        with pytest.raises(sa.exc.IntegrityError):
            db.session.execute(sa.update(IntervalSchedule.__table__).values(every=87673))
            db.session.flush()
        db.session.rollback()


@pytest.mark.parametrize(
    ("entry", "field", "message"),
    [
        (Entry(name="feb", task="t.add", cron="0 0 30 2 *"), "day_of_month", "never fires in the next 5 years"),
        (Entry(name="back", task="t.add", cron="5-1 * * * *"), "minute", "runs backwards"),
        (Entry(name="step", task="t.add", cron="*/1000000000000 * * * *"), "minute", "a step is 1 to 60"),
        (Entry(name="huge", task="t.add", every=10**9, period="days"), "every", "10 years"),
        (Entry(name="zone", task="t.add", cron="0 3 * * *", timezone="posixrules"), "timezone", "Unknown time zone"),
    ],
)
def test_sync_refuses_a_bad_registry_entry(app, runner, monkeypatch, entry, field, message):
    with app.app_context():
        with pytest.raises(ValidationError) as info:
            sync((entry,))
        assert message in info.value.errors[field]
        db.session.rollback()
        assert count(PeriodicTask) == 0
    monkeypatch.setattr("itsm.schedules.cli.entries", lambda: (entry,))
    result = runner.invoke(args=["schedules", "sync"])
    assert result.exit_code == 1 and "the registry has an invalid entry" in result.output and message in result.output


@pytest.mark.parametrize("zone", ["localtime", "Factory"])
def test_sync_refuses_a_time_zone_setting_that_is_not_a_place(app, zone):
    """Entries without a zone of their own take TIME_ZONE: it follows the same rule."""
    app.config["TIME_ZONE"] = zone
    with app.app_context():
        with pytest.raises(ValidationError) as info:
            sync((Entry(name="nightly", task="t.add", cron="0 3 * * *"),))
        assert f"Unknown time zone {zone!r}" in info.value.errors["timezone"]


# -- every reader survives one already stored -------------------------------------------------------

@pytest.fixture
def bad_rows(app):
    """A good task next to a crontab that never fires and a billion-day interval, as plain SQL left them."""
    with app.app_context():
        good = service.save(Definition(name="good", task="t.add", kind="interval", every=1, period="minutes"))
        db.session.commit()
        return {"good": good.id, "crontab": badrows.insert_never_firing_crontab(),
                "interval": badrows.insert_huge_interval(), "zone": badrows.insert_folder_zone(),
                "args": badrows.insert_wrong_arguments()}


def test_schedules_pages_answer_with_the_bad_rows_present(app, client, auth, bad_rows):
    auth.login()
    page = client.get("/admin/schedules")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    # The arguments are the scheduler's to judge (below); the schedules are judged by every reader.
    assert html.count(">invalid<") == 3 and "no date matches its crontab" in html and "far too long" in html
    assert "&#39;America&#39; is not an IANA time zone" in html
    for task_id in bad_rows.values():
        assert client.get(f"/admin/schedules/{task_id}/edit").status_code == 200
        assert client.get(f"/admin/schedules/{task_id}/history").status_code == 200
    history = client.get(f"/admin/schedules/{bad_rows['crontab']}/history").get_data(as_text=True)
    assert "invalid" in history and "no date matches its crontab" in history
    edit = client.get(f"/admin/schedules/{bad_rows['interval']}/edit").get_data(as_text=True)
    assert "far too long" in edit
    automation = client.get("/admin/automation")
    assert automation.status_code == 200 and automation.get_data(as_text=True).count(">invalid<") == 3
    refused = auth.post(f"/admin/schedules/{bad_rows['args']}/run", follow_redirects=True)
    assert refused.status_code == 200 and "its arguments are not a list" in refused.get_data(as_text=True)
    # The admin can disable the bad one from the page; enabling it again needs a valid schedule.
    assert auth.post(f"/admin/schedules/{bad_rows['interval']}/toggle").status_code == 302
    with app.app_context():
        assert not db.session.get(PeriodicTask, bad_rows["interval"]).enabled
    again = auth.post(f"/admin/schedules/{bad_rows['interval']}/toggle", follow_redirects=True)
    assert again.status_code == 200 and "Could not change a-billion-days" in again.get_data(as_text=True)
    with app.app_context():
        assert not db.session.get(PeriodicTask, bad_rows["interval"]).enabled


def test_the_edit_form_refuses_to_keep_the_bad_value_and_accepts_a_fix(app, client, auth, bad_rows):
    auth.login()
    form = {"name": "february-30", "task": "t.count", "kind": "crontab", "minute": "0", "hour": "0",
            "day_of_month": "30", "month_of_year": "2", "day_of_week": "*", "timezone": "UTC", "args": "[]",
            "kwargs": "{}", "queue": "", "misfire_policy": "skip", "overlap_policy": "skip",
            "catchup_window_seconds": "86400", "jitter_seconds": "0", "enabled": "y", "period": "minutes",
            "event": "sunrise"}
    refused = auth.post(f"/admin/schedules/{bad_rows['crontab']}/edit", form)
    assert refused.status_code == 400
    assert 'id="day_of_month-error">This crontab never fires in the next 5 years' in refused.get_data(as_text=True)
    assert auth.post(f"/admin/schedules/{bad_rows['crontab']}/edit", {**form, "day_of_month": "28"}).status_code == 302
    with app.app_context():
        assert db.session.get(PeriodicTask, bad_rows["crontab"]).crontab.day_of_month == "28"


def test_cli_list_readyz_and_the_admins_emails_with_the_bad_rows_present(app, client, auth, runner, ids, bad_rows):
    listing = runner.invoke(args=["schedules", "list"])
    assert listing.exit_code == 0, listing.output
    assert listing.output.count("INVALID: Its schedule cannot be evaluated") == 3
    assert "every minute" in listing.output  # the good one is listed as usual
    auth.login()  # the checks are shown to admins
    body = client.get("/readyz").get_json()
    schedules = body["checks"]["schedules"]
    assert not schedules["ok"] and sorted(schedules["invalid"]) == ["a-billion-days", "february-30", "zone-america"]
    assert schedules["late"] == []
    with app.app_context():
        alerts = alert_late_schedules(utcnow())
        assert alerts["invalid"] == ["a-billion-days", "february-30", "zone-america"] and alerts["queued"] == 3
        assert alert_late_schedules(utcnow())["queued"] == 0  # told once per bad definition
        subjects = sorted(m.subject for m in db.session.scalars(sa.select(EmailMessage)))
        assert subjects == ["[itsm] Schedule a-billion-days is invalid", "[itsm] Schedule february-30 is invalid",
                            "[itsm] Schedule zone-america is invalid"]
        db.session.execute(sa.delete(EmailMessage))
        db.session.commit()
        send_daily_digests(utcnow())
        text = " ".join(m.body_text for m in db.session.scalars(sa.select(EmailMessage)))
        assert "3 schedule(s) invalid: a-billion-days, february-30, zone-america" in text


def test_the_recurring_health_section_survives_a_bad_recurring_schedule(app, client, auth):
    with app.app_context():
        task_id = badrows.insert_huge_interval("recurring")
        db.session.execute(sa.update(PeriodicTask).where(PeriodicTask.id == task_id)
                           .values(task="process_recurring_tickets"))
        db.session.commit()
    auth.login()
    assert client.get("/admin/automation").status_code == 200


def test_a_row_marked_invalid_by_the_scheduler_shows_its_reason_until_edited(app, client, auth):
    with app.app_context():
        row = service.save(Definition(name="gone", task="t.add", kind="interval", every=1, period="minutes"))
        db.session.flush()
        row.invalid_reason, row.invalid_since = "Its task 't.gone' is not in this version's code.", utcnow()
        row.scheduled_hash = service.definition_hash(row)
        db.session.commit()
        task_id = row.id
    auth.login()
    assert "not in this version&#39;s code" in client.get("/admin/schedules").get_data(as_text=True)
    with app.app_context():
        row = db.session.get(PeriodicTask, task_id)
        service.save(Definition(name="gone", task="t.add", kind="interval", every=2, period="minutes"), row)
        db.session.commit()
    assert "not in this version" not in client.get("/admin/schedules").get_data(as_text=True)


def test_ticks_are_never_evaluated_outside_the_supported_years(app):
    """An interval at the bound, anchored far ahead, still evaluates (no overflow) for every reader."""
    from itsm.schedules.describe import next_runs, period_of, state_of

    with app.app_context():
        row = service.save(Definition(name="decade", task="t.add", kind="interval", every=3653, period="days",
                                      start_time=datetime(2999, 1, 1, tzinfo=UTC)))
        db.session.commit()
        now = utcnow()
        assert state_of(row, now) == ("on time", None)
        assert period_of(row, now) == timedelta(days=3653)
        assert next_runs(row, now, 3)[0].year == 2999


def test_resetting_to_a_default_the_rules_refuse_says_so_and_changes_nothing(app, client, auth):
    """A code default stored by an older version (a crontab that never fires): *Reset to default* flashes
    the rule instead of a 500, and the admin's override stays."""
    with app.app_context():
        sync((Entry(name="nightly", task="t.add", cron="0 3 * * *"),))
        row = db.session.scalar(sa.select(PeriodicTask).where(PeriodicTask.name == "nightly"))
        override = service.definition_of(row)
        service.save(Definition(**{**override.__dict__, "crontab": {**override.crontab, "hour": "4"}}), row)
        row.overridden = True
        stored = {**row.default_definition, "crontab": {**row.default_definition["crontab"],
                                                        "day_of_month": "30", "month_of_year": "2"}}
        db.session.execute(sa.update(PeriodicTask).where(PeriodicTask.id == row.id)
                           .values(default_definition=stored))
        db.session.commit()
        task_id = row.id
    auth.login()
    page = auth.post(f"/admin/schedules/{task_id}/reset", follow_redirects=True)
    assert page.status_code == 200
    assert "Could not reset nightly" in page.get_data(as_text=True)
    with app.app_context():
        row = db.session.get(PeriodicTask, task_id)
        assert row.overridden and row.crontab.hour == "4"
