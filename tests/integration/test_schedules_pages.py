"""/admin/schedules and ``flask schedules ...``."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import sqlalchemy as sa

from itsm.extensions import db
from itsm.schedules import service
from itsm.schedules.catalog import Entry
from itsm.schedules.models import PeriodicTask
from itsm.schedules.sync import sync
from itsm.schedules.validation import Definition
from jobs.models import JobRun

pytestmark = pytest.mark.usefixtures("redis")

FORM = {"name": "weekday report", "task": "t.add", "kind": "crontab", "minute": "0", "hour": "9",
        "day_of_month": "*", "month_of_year": "*", "day_of_week": "1-5", "timezone": "America/Toronto",
        "args": "[1, 2]", "kwargs": "{}", "queue": "", "misfire_policy": "once", "overlap_policy": "skip",
        "catchup_window_seconds": "86400", "jitter_seconds": "0", "enabled": "y", "period": "minutes",
        "event": "sunrise"}


def errors(html: str) -> list[str]:
    from html import unescape

    return [unescape(e) for e in re.findall(r'class="error"[^>]*>([^<]+)', html)]


def test_create_and_list_in_words_with_next_runs(app, client, auth):
    auth.login()
    assert auth.post("/admin/schedules/new", FORM).status_code == 302
    page = client.get("/admin/schedules").get_data(as_text=True)
    assert "weekday report" in page and "At 09:00 AM, Monday through Friday (America/Toronto)" in page
    assert len(re.findall(r"(?:\d{4}-\d\d-\d\d|today) 09:00 America/Toronto", page)) == 3


@pytest.mark.parametrize(
    ("changes", "messages"),
    [
        ({"minute": "99", "timezone": "Mars/Base", "args": "[", "kwargs": "[]"},
         ["Invalid cron field '99': minutes are 0 to 59.",
          "Unknown time zone 'Mars/Base'; use an IANA name like Europe/Berlin.",
          "Invalid JSON: Expecting value (line 1, column 2).", 'Must be a JSON object, like {"key": 1}.']),
        ({"kind": "interval", "every": "0"}, ["Must be 1 or more."]),
        ({"kind": "interval", "every": "many"}, ["Not a valid integer value."]),
        ({"kind": "solar", "latitude": "123", "longitude": "0"}, ["Latitude must be between -90 and 90."]),
        ({"kind": "clocked", "clocked_time": "2030-01-01T10:00"}, ["A clocked schedule runs once: tick one-off."]),
        ({"task": "rm -rf /"}, ["Not a valid choice."]),
        ({"name": ""}, ["This field is required."]),
    ],
)
def test_bad_input_is_shown_next_to_each_field(app, client, auth, changes, messages):
    auth.login()
    response = auth.post("/admin/schedules/new", {**FORM, **changes})
    assert response.status_code == 400
    found = errors(response.get_data(as_text=True))
    for message in messages:
        assert message in found
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(PeriodicTask.id))) == 0


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"minute": "5-1"}, "minute", "Invalid cron field '5-1': the range 5-1 runs backwards"),
        ({"minute": "*/1000000000000"}, "minute", "Invalid cron field '*/1000000000000': a step is 1 to 60."),
        ({"hour": "*/" + "7" * 30}, "hour", "a step is 1 to 24."),
        ({"day_of_month": "30", "month_of_year": "2", "day_of_week": "*"}, "day_of_month",
         "This crontab never fires in the next 5 years"),
        ({"day_of_week": "FRI-MON"}, "day_of_week", "runs backwards"),
        ({"timezone": "localtime"}, "timezone", "Unknown time zone 'localtime'"),
        ({"timezone": "posixrules"}, "timezone", "Unknown time zone 'posixrules'"),
        ({"timezone": "Factory"}, "timezone", "Unknown time zone 'Factory'"),
        ({"kind": "interval", "every": "1000000000", "period": "days"}, "every",
         "Must be at most 3,653 days (10 years)."),
        ({"timezone": "America"}, "timezone", "Unknown time zone 'America'"),
        ({"expire_seconds": "2147483648"}, "expire_seconds", "Between 1 second and ten years."),
        ({"jitter_seconds": "99999999999999999999"}, "jitter_seconds", "Between 0 and 3600 seconds."),
        ({"catchup_window_seconds": "99999999999999999999"}, "catchup_window_seconds",
         "Between 60 seconds and a year."),
    ],
)
def test_nonsense_schedules_are_refused_next_to_their_field(app, client, auth, changes, field, message):
    auth.login()
    response = auth.post("/admin/schedules/new", {**FORM, **changes})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    from html import unescape

    assert f'id="{field}-error">' in html
    assert message in unescape(html.split(f'id="{field}-error">', 1)[1].split("</p>", 1)[0])
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(PeriodicTask.id))) == 0


def test_an_empty_time_zone_is_refused_not_replaced(app, client, auth):
    """The form fills the default zone only on a fresh form; a zone cleared and submitted is an error."""
    auth.login()
    response = auth.post("/admin/schedules/new", {**FORM, "timezone": ""})
    assert response.status_code == 400 and "Unknown time zone" in response.get_data(as_text=True)


def test_both_day_fields_are_described_as_either(app, client, auth):
    auth.login()
    assert auth.post("/admin/schedules/new", {**FORM, "minute": "0", "hour": "0", "day_of_month": "1",
                                              "day_of_week": "1", "timezone": "UTC"}).status_code == 302
    page = client.get("/admin/schedules").get_data(as_text=True)
    assert "At 12:00 AM, on day 1 of the month or on Monday (UTC)" in page


def registry_row(app) -> int:
    with app.app_context():
        sync((Entry(name="ping", task="t.add", every=10, period="minutes", args=(1, 2)),))
        return db.session.scalar(sa.select(PeriodicTask.id))


def test_toggle_override_badge_and_reset(app, client, auth):
    task_id = registry_row(app)
    auth.login()
    auth.post(f"/admin/schedules/{task_id}/toggle")
    page = client.get("/admin/schedules").get_data(as_text=True)
    assert "overridden" in page and "disabled" in page
    # Reset to default asks first: a link to a page that says what changes, with the real (CSRF) button.
    assert f'href="/admin/schedules/{task_id}/reset">Reset to default</a>' in page
    assert f'action="/admin/schedules/{task_id}/reset"' not in page
    confirm = client.get(f"/admin/schedules/{task_id}/reset").get_data(as_text=True)
    assert "Reset ping to the code's default?" in confirm
    assert re.search(r"<td>enabled</td><td[^>]*>false</td><td[^>]*>true</td>", confirm)
    assert f'<form method="post" action="/admin/schedules/{task_id}/reset"' in confirm
    assert 'name="csrf_token"' in confirm
    with app.app_context():
        assert db.session.get(PeriodicTask, task_id).overridden  # asking changed nothing
    assert client.post(f"/admin/schedules/{task_id}/reset").status_code == 400  # no token, no reset
    assert auth.post(f"/admin/schedules/{task_id}/reset").status_code == 302
    with app.app_context():
        row = db.session.get(PeriodicTask, task_id)
        assert row.enabled and not row.overridden
    assert auth.post(f"/admin/schedules/{task_id}/delete").status_code == 400  # code tasks are not deleted


def test_edit_a_registry_task_marks_it_overridden(app, client, auth):
    task_id = registry_row(app)
    auth.login()
    page = client.get(f"/admin/schedules/{task_id}/edit").get_data(as_text=True)
    assert "overrides the code's default" in page
    form = {**FORM, "name": "ping", "kind": "interval", "every": "5", "period": "minutes"}
    assert auth.post(f"/admin/schedules/{task_id}/edit", form).status_code == 302
    with app.app_context():
        row = db.session.get(PeriodicTask, task_id)
        assert row.overridden and row.interval.every == 5


def test_run_now_and_history(app, client, auth):
    with app.app_context():
        row = service.save(Definition(name="adder", task="t.add", kind="interval", every=1, period="hours",
                                      args=[2, 2]))
        db.session.commit()
        task_id = row.id
    auth.login()
    response = auth.post(f"/admin/schedules/{task_id}/run", follow_redirects=True)
    assert "enqueued now" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(JobRun.task_name)) == "t.add"
    history = client.get(f"/admin/schedules/{task_id}/history").get_data(as_text=True)
    assert "It has not run yet." not in history  # the manual run is listed, as such
    assert '<tr class="source-manual">' in history and '<span class="badge run-queued">queued</span>' in history
    assert "not run yet" not in client.get("/admin/schedules").get_data(as_text=True)
    assert client.get("/admin/schedules/9999/history").status_code == 404


def test_a_task_that_never_ran_says_so(app, client, auth):
    task_id = registry_row(app)
    auth.login()
    assert "It has not run yet." in client.get(f"/admin/schedules/{task_id}/history").get_data(as_text=True)
    assert '<span class="muted">not run yet</span>' in client.get("/admin/schedules").get_data(as_text=True)


def test_plan_a_one_off_run(app, client, auth):
    auth.login()
    response = auth.post("/admin/schedules/one-off", {"task": "t.add", "run_at": "2031-05-01T08:30",
                                                      "args": "[1, 1]"}, follow_redirects=True)
    assert "One-off run of t.add planned" in response.get_data(as_text=True)
    with app.app_context():
        row = db.session.scalar(sa.select(PeriodicTask))
        assert row.one_off and row.clocked and row.args == [1, 1]
    bad = auth.post("/admin/schedules/one-off", {"task": "t.add", "run_at": "soon", "args": "[]"},
                    follow_redirects=True)
    assert "One-off run not created" in bad.get_data(as_text=True)


def test_cli_sync_list_and_run(app, runner):
    first = runner.invoke(args=["schedules", "sync", "--dry-run"])
    assert first.exit_code == 0 and "would be created   automation-ping" in first.output
    assert "created   automation-ping" in runner.invoke(args=["schedules", "sync"]).output
    assert "nothing changed" in runner.invoke(args=["schedules", "sync"]).output
    listing = runner.invoke(args=["schedules", "list"])
    assert listing.exit_code == 0 and "every 10 minutes" in listing.output
    assert "last run  not run yet; 0 finished run(s)" in listing.output
    ran = runner.invoke(args=["schedules", "run", "automation-ping"])
    assert ran.exit_code == 0 and "Enqueued automation-ping" in ran.output
    missing = runner.invoke(args=["schedules", "run", "nope"])
    assert missing.exit_code != 0 and "no periodic job named 'nope' (known: admin-digests, " in missing.stderr
    assert "flask schedules sync" not in missing.stderr


def test_cli_run_on_a_database_never_synced_says_to_sync(app, runner):
    missing = runner.invoke(args=["schedules", "run", "backup-database"])
    assert missing.exit_code == 1 and missing.stdout == ""
    assert "no periodic job named 'backup-database'" in missing.stderr
    assert "run `flask schedules sync` first" in missing.stderr and "known: none" not in missing.stderr


def test_late_detection(app):
    from datetime import timedelta

    from itsm.dbtypes import utcnow
    from itsm.schedules.describe import is_late

    with app.app_context():
        row = service.save(Definition(name="every-minute", task="t.add", kind="interval", every=1,
                                      period="minutes"))
        db.session.commit()
        now = utcnow()
        row.last_run_at = now - timedelta(minutes=3)
        assert not is_late(row, now)
        row.last_run_at = now - timedelta(minutes=5)
        assert is_late(row, now)
        service.save(replace(service.definition_of(row), enabled=False), row)
        assert not is_late(row, now)


def test_preview_shows_the_next_runs_in_the_schedules_zone_without_saving(app, client, auth):
    auth.login()
    response = auth.post("/admin/schedules/new", {**FORM, "timezone": "Europe/Berlin", "preview": "1"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    preview = html.split('id="schedule-preview"', 1)[1].split("</section>", 1)[0]
    runs = re.findall(r"<time[^>]*>([^<]+)</time>", preview)
    assert len(runs) == 5 and all(re.fullmatch(r"(\d{4}-\d\d-\d\d|today) 09:00 Europe/Berlin", r) for r in runs)
    assert "At 09:00 AM, Monday through Friday (Europe/Berlin)" in preview and "Europe/Berlin" in preview
    assert 'value="weekday report"' in html  # the form comes back as it was filled in
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(PeriodicTask.id))) == 0


def test_preview_of_an_edit_saves_nothing_and_bad_input_is_shown_next_to_its_field(app, client, auth):
    task_id = registry_row(app)
    auth.login()
    form = {**FORM, "name": "ping", "minute": "*/15", "hour": "*", "day_of_week": "*", "timezone": "UTC",
            "preview": "1"}
    html = auth.post(f"/admin/schedules/{task_id}/edit", form).get_data(as_text=True)
    runs = re.findall(r"<time[^>]*>([^<]+)</time>", html.split('id="schedule-preview"', 1)[1])
    assert len(runs) == 5 and all(re.fullmatch(r"(\d{4}-\d\d-\d\d|today) \d\d:(00|15|30|45) UTC", r) for r in runs)
    bad = auth.post(f"/admin/schedules/{task_id}/edit", {**form, "minute": "99"})
    assert bad.status_code == 400 and 'id="schedule-preview"' not in bad.get_data(as_text=True)
    assert "Invalid cron field '99'" in " ".join(errors(bad.get_data(as_text=True)))
    assert client.post(f"/admin/schedules/{task_id}/edit", data=form).status_code == 400  # no CSRF token
    with app.app_context():
        row = db.session.get(PeriodicTask, task_id)
        assert row.kind == "interval" and row.interval.every == 10 and not row.overridden
