"""Each 500 the fuzzing found, pinned down as a plain example (it was fixed where it happened)."""

from __future__ import annotations

import pytest

from itsm.extensions import db

pytestmark = pytest.mark.usefixtures("redis")
# For the cases that do not depend on the database engine: the SQLite run only.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@sqlite_only
def test_a_page_number_in_other_digits_is_a_400(auth, seeded):
    """str.isdigit() is True for "²" but int("²") raises (itsm/tickets/queries.py, page_number)."""
    auth.login()
    for page in ("\u00b2", "\u0661", "\uff11", "1\u00b2"):
        for path in ("/tickets", f"/tickets/{seeded.template}", "/admin/outbox", "/admin/automation"):
            response = auth._client.get(path, query_string={"page": page})
            assert response.status_code == 400, (path, page, response.status_code)
            assert "The page number must be a whole number" in response.get_data(as_text=True)


def test_a_nul_character_is_refused_before_it_reaches_the_database(app, auth, dump, ids):
    """PostgreSQL cannot store U+0000 in text; every text field and query used to end in a 500 there
    (refused for every request in itsm/errors.py)."""
    auth.login()
    before = dump()
    for url, data in (("/admin/columns", {"name": "a\x00b"}), ("/tickets/new", {"title": "x\x00", "priority": "2",
                                                                                  "column_id": ids.columns["New"]}),
                      ("/admin/holidays", {"day": "2031-01-01", "name": "\x00"})):
        response = auth.post(url, data)
        assert response.status_code == 400, (url, response.status_code)
        assert "NUL character" in response.get_data(as_text=True)
    for query in ({"q": "a\x00"}, {"sort": "\x00"}):
        response = auth._client.get("/tickets", query_string=query)
        assert response.status_code == 400 and "NUL character" in response.get_data(as_text=True)
    assert auth._client.get("/tickets", query_string={"q": "a\x01"}).status_code == 200  # other controls pass
    assert dump() == before


def test_a_duplicate_column_name_with_capital_non_ascii_letters_is_a_message(app, auth):
    """SQLite's lower() folds ASCII only, so the "name taken" check missed an exact duplicate such as
    "Ärger" and the unique index turned the insert into a 500 (itsm/board/service.py, _name_taken)."""
    from itsm.board.models import BoardColumn

    auth.login()
    for name in ("\u00c4rger", "\u00c9T\u00c9", "Stra\u00dfe \u0130"):
        assert auth.post("/admin/columns", {"name": name}).status_code == 302
        again = auth.post("/admin/columns", {"name": name})
        assert again.status_code == 400 and "already exists" in again.get_data(as_text=True), name
        with app.app_context():
            assert db.session.scalar(db.select(db.func.count()).where(BoardColumn.name == name)) == 1


def test_a_duplicate_schedule_name_with_capital_non_ascii_letters_is_a_message(app, auth):
    """The same check for periodic tasks (itsm/schedules/service.py, name_taken)."""
    from itsm.schedules.models import PeriodicTask

    auth.login()
    form = {"name": "\u00dcberpr\u00fcfung", "task": "t.add", "kind": "interval", "every": "5", "period": "minutes",
            "timezone": "UTC", "args": "[1, 2]", "kwargs": "{}", "misfire_policy": "once", "overlap_policy": "skip",
            "catchup_window_seconds": "86400", "jitter_seconds": "0", "enabled": "y", "queue": ""}
    first = auth.post("/admin/schedules/new", form)
    assert first.status_code == 302, first.get_data(as_text=True)
    again = auth.post("/admin/schedules/new", form)
    assert again.status_code == 400 and "already" in again.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).where(PeriodicTask.name == form["name"])) == 1


@sqlite_only
def test_compacting_a_queue_that_does_not_exist_is_not_a_500(auth, redis):
    """rq's Queue.compact() renames the queue's list, and Redis refuses to rename a key that is not
    there ("no such key"): the dashboard's Compact button on an empty queue was a 500 (itsm/rq_admin.py)."""
    auth.login()
    assert not redis.exists("rq:queue:default")
    response = auth._client.post("/admin/rq/queue/default/compact", headers={"Origin": "http://localhost"})
    assert response.status_code == 200 and response.get_json()["status"] == "OK"


@sqlite_only
def test_a_rule_with_no_business_day_fails_fast(auth, monkeypatch):
    """A weekly rule on Sundays that skips non-business days has no occurrence. Looking for one asked
    rrule.after() up to 5000 times, each a walk from the start: some 12 million steps, half a minute
    of CPU for one request from any agent (a gunicorn worker timeout), through the live preview
    (itsm/recurrence_rules.py, next_occurrence). The steps are counted, not timed."""
    from dateutil import rrule

    steps = 0
    original = rrule.rrule._iter

    def counting(self):
        nonlocal steps
        for value in original(self):
            steps += 1
            yield value

    monkeypatch.setattr(rrule.rrule, "_iter", counting)
    auth.login()
    response = auth._client.get("/tickets/recurrence-preview", query_string={
        "recurrence_every": "1", "recurrence_interval": "weekly", "next_occurrence": "2031-01-05T09:00",
        "recurrence_time_zone": "UTC", "recurrence_business_days": "skip", "recurrence_ends": "never",
        "recurrence_monthly_mode": "day", "recurrence_open_policy": "always", "recurrence_catch_up": "latest"})
    assert response.status_code == 400
    assert "no occurrence" in response.get_data(as_text=True)
    assert steps <= 10_000, steps


@sqlite_only
def test_blank_list_filters_are_ignored_not_a_500(auth):
    """Optional() takes a blank value for a missing one and drops the select's "Not a valid choice",
    so /tickets?assignee=%20 reached int(" ") (and priority, sort a KeyError): itsm/tickets/forms.py."""
    auth.login()
    for name in ("column", "assignee", "priority", "archived", "sort"):
        for blank in (" ", " \t\u00a0\u3000 "):
            response = auth._client.get("/tickets", query_string={name: blank})
            assert response.status_code == 200, (name, repr(blank), response.status_code)
    assert auth._client.get("/tickets", query_string={"priority": " nonsense "}).status_code == 400


@sqlite_only
def test_deeply_nested_task_arguments_are_a_message(app, auth, seeded):
    """json.loads("[" * 5000 ...) raises RecursionError, not a ValueError: the periodic task form and
    the one-off form answered 500 (itsm/schedules/validation.py, parse_json; schedules/routes.py)."""
    from itsm.schedules.models import PeriodicTask

    auth.login()
    form = {"name": "nested", "task": "t.add", "kind": "interval", "every": "5", "period": "minutes",
            "timezone": "UTC", "kwargs": "{}", "misfire_policy": "once", "overlap_policy": "skip",
            "catchup_window_seconds": "86400", "jitter_seconds": "0", "enabled": "y", "queue": ""}
    for depth in (21, 900, 5000):
        for url in ("/admin/schedules/new", f"/admin/schedules/{seeded.task}/edit"):
            response = auth.post(url, {**form, "args": "[" * depth + "]" * depth})
            assert response.status_code == 400, (url, depth, response.status_code)
            assert "nested more than 20 levels deep" in response.get_data(as_text=True)
    response = auth.post("/admin/schedules/one-off", {"task": "t.add", "run_at": "2031-01-01T09:00",
                                                       "args": "[" * 1000 + "]" * 1000}, follow_redirects=True)
    assert response.status_code == 200 and "nested more than 20 levels deep" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(PeriodicTask)) == 1  # the seeded one
    nested = "[" * 20 + "]" * 20
    assert auth.post("/admin/schedules/new", {**form, "args": nested}).status_code == 302


@sqlite_only
@pytest.mark.parametrize("app_config", [{"TIME_ZONE": "Pacific/Kiritimati"}, {"TIME_ZONE": "Pacific/Pago_Pago"}])
def test_times_at_the_ends_of_the_calendar_are_a_message(app, auth, seeded):
    """Converting 0001-01-01 00:00 or 9999-12-31 23:59 between the desk's TIME_ZONE and UTC, or stepping a
    series from it, leaves datetime's range: OverflowError, a 500 (itsm/recurring/forms.py check,
    itsm/schedules/forms.py sane_year)."""
    auth.login()
    for when in ("0001-01-01T00:00", "9999-12-31T23:59"):
        preview = auth._client.get("/tickets/recurrence-preview", query_string={
            "recurrence_every": "1", "recurrence_interval": "weekly", "next_occurrence": when,
            "recurrence_time_zone": "UTC", "recurrence_ends": "never", "recurrence_monthly_mode": "day",
            "recurrence_open_policy": "always", "recurrence_catch_up": "latest"})
        assert preview.status_code == 400 and "between the years 1900 and 2999" in preview.get_data(as_text=True)
        edit = auth._client.get(f"/tickets/{seeded.template}/edit").get_data(as_text=True)
        assert "Weekly check" in edit
        form = {"title": "Weekly check", "priority": "2", "assignee_id": "0", "recurrence_every": "1",
                "recurrence_interval": "weekly", "next_occurrence": when, "recurrence_time_zone": "UTC",
                "recurrence_ends": "never", "recurrence_monthly_mode": "day", "recurrence_ordinal": "1",
                "recurrence_ordinal_weekday": "0", "recurrence_business_days": "", "recurrence_lead_hours": "0",
                "recurrence_open_policy": "always", "recurrence_catch_up": "latest"}
        response = auth.post(f"/tickets/{seeded.template}/edit", form)
        assert response.status_code == 400 and "between the years 1900 and 2999" in response.get_data(as_text=True)
        for field in ("clocked_time", "start_time", "expires"):
            response = auth.post(f"/admin/schedules/{seeded.task}/edit", {
                "name": "abuse task", "task": "t.add", "kind": "clocked" if field == "clocked_time" else "interval",
                "every": "5", "period": "minutes", "timezone": "UTC", "args": "[]", "kwargs": "{}", "queue": "",
                "misfire_policy": "once", "overlap_policy": "skip", "catchup_window_seconds": "86400",
                "jitter_seconds": "0", "enabled": "y", field: when})
            assert response.status_code == 400, (field, response.status_code)
            assert "between the years 1900 and 2999" in response.get_data(as_text=True)
        response = auth.post("/admin/schedules/one-off", {"task": "t.add", "run_at": when, "args": "[]"},
                             follow_redirects=True)
        assert response.status_code == 200 and "between the years 1900 and 2999" in response.get_data(as_text=True)
