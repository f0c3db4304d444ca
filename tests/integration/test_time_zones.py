"""Times in the viewer's zone, in one format: the filters, pages, flashes and emails."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from flask import render_template_string

from itsm.automation.admin_mail import send_daily_digests
from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.mail.models import EmailMessage
from itsm.tickets.models import Ticket
from itsm.users.models import User
from jobs.models import JobRun
from tests import factories

DESK = "America/New_York"
TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


@pytest.fixture
def app_config():
    return {"TIME_ZONE": DESK}


def choose_zone(user_id: int, zone: str | None) -> None:
    db.session.get(User, user_id).time_zone = zone
    db.session.commit()


def render(source: str, **context) -> str:
    return render_template_string(source, **context)


def test_the_filters_write_one_format_with_the_year_unless_today(app):
    with app.app_context():
        old = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
        assert render("{{ v|local_dt }}", v=old) == "2025-01-15 07:00"  # the desk's zone, with its year
        assert render("{{ v|local_dt or 'never' }}", v=None) == "never"
        now = utcnow()
        expected = f"today {now.astimezone(ZoneInfo(DESK)):%H:%M}"
        assert render("{{ v|local_dt }}", v=now) == expected
        # A time that belongs to another zone is labelled with it, in the same format.
        assert render("{{ v|in_zone('Europe/Berlin') }}", v=old) == "2025-01-15 13:00 Europe/Berlin"
        berlin = old.astimezone(ZoneInfo("Asia/Kolkata"))
        assert render("{{ v|in_zone }}", v=berlin) == "2025-01-15 17:30 Asia/Kolkata"  # the zone it carries
        # In an email (read some other day) every time has its date and names its zone.
        assert render("{{ v|local_dt }}", v=now, email_time_zone="Asia/Tokyo") == \
            f"{now.astimezone(ZoneInfo('Asia/Tokyo')):%Y-%m-%d %H:%M} Asia/Tokyo"


def test_a_page_shows_times_in_the_viewers_zone_and_names_it(app, ids, client, auth):
    with app.app_context():
        ticket_id = factories.make_ticket("Zoned").id
        moment = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
        db.session.execute(sa.update(Ticket).where(Ticket.id == ticket_id).values(created_at=moment,
                                                                                 updated_at=moment))
        db.session.commit()
        choose_zone(ids.agent, "Asia/Tokyo")
    auth.login_agent()
    page = client.get(f"/tickets/{ticket_id}").get_data(as_text=True)
    assert "2025-01-15 21:00" in page and "times in Asia/Tokyo" in page
    assert "2025-01-15 07:00" not in page
    auth.logout()
    auth.login()  # the admin chose nothing: the desk's zone
    page = client.get(f"/tickets/{ticket_id}").get_data(as_text=True)
    assert "2025-01-15 07:00" in page and "times in America/New_York" in page


def test_job_runs_carry_the_year_in_the_viewers_zone(app, ids, client, auth):
    with app.app_context():
        at = datetime(2025, 12, 2, 15, 50, 31, tzinfo=UTC)
        run = JobRun(job_id="zoned-run", attempt=1, task_name="t.add", queue="default", status="succeeded",
                     created_at=at, enqueued_at=at, started_at=at, finished_at=at + timedelta(seconds=2),
                     duration_seconds=2.0)
        db.session.add(run)
        db.session.commit()
        run_id = run.id
        choose_zone(ids.admin, "Europe/Berlin")
    auth.login()
    listing = client.get("/admin/automation").get_data(as_text=True)
    assert "2025-12-02 16:50" in listing and "12-02 15:50:31" not in listing
    detail = client.get(f"/admin/automation/runs/{run_id}").get_data(as_text=True)
    assert "2025-12-02 16:50" in detail and "times in Europe/Berlin" in detail


def test_a_template_page_and_its_flash_label_the_templates_zone(app, ids, client, auth):
    with app.app_context():
        choose_zone(ids.agent, "Asia/Tokyo")
    auth.login_agent()
    form = {"title": "Patch check", "description": "", "priority": "2", "column_id": str(ids.columns["New"]),
            "assignee_id": "0", "requester_email": "", "category": "", "is_recurring": "y",
            "recurrence_every": "1", "recurrence_interval": "weekly", "recurrence_weekdays": ["0"],
            "next_occurrence": "2027-03-22T09:00", "recurrence_time_zone": "Europe/Berlin",
            "recurrence_monthly_mode": "day", "recurrence_ordinal": "1", "recurrence_ordinal_weekday": "0",
            "recurrence_business_days": "", "recurrence_lead_hours": "2", "recurrence_ends": "never",
            "recurrence_open_policy": "always", "recurrence_catch_up": "latest"}
    response = auth.post("/tickets/new", form, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert response.status_code == 200, page
    # The flash, the next occurrence and the opening time all in the template's zone, each labelled.
    assert "next occurrence 2027-03-22 09:00 Europe/Berlin." in page
    assert "The first one opens at 2027-03-22 07:00 Europe/Berlin." in page
    assert "UTC" not in page.split("<footer")[0]
    assert "times in Asia/Tokyo" in page


def test_each_email_is_written_in_its_recipients_zone(app, ids):
    with app.app_context():
        second = factories.make_user("second.admin@example.com", role="admin")
        for user_id, zone in ((ids.admin, "Asia/Tokyo"), (second.id, None)):
            user = db.session.get(User, user_id)
            user.notify_operational, user.notify_admin_actions, user.time_zone = True, False, zone
        db.session.commit()
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        assert send_daily_digests(now)["queued"] == 2
        mails = {m.to_address: m for m in db.session.scalars(sa.select(EmailMessage))}
        since = now - timedelta(hours=24)

        def shown(moment, zone):
            return f"{moment.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M} {zone}"

        tokyo = mails["admin@example.com"]
        assert f"The automation from {shown(since, 'Asia/Tokyo')} to {shown(now, 'Asia/Tokyo')}:" in tokyo.body_text
        assert shown(now, "Asia/Tokyo") in tokyo.body_html and "today" not in tokyo.body_text
        desk = mails["second.admin@example.com"]  # no choice made: the desk's zone
        assert f"The automation from {shown(since, DESK)} to {shown(now, DESK)}:" in desk.body_text


def test_no_template_brings_its_own_time_format():
    """One format: templates show moments through local_dt and in_zone only, never with a format of their own."""
    offenders = []
    for path in TEMPLATES.rglob("*.*"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"local_dt\(|in_zone\([^)]*,|%H|%M|\.strftime\(", line) and "h.day.strftime('%A')" not in line:
                offenders.append(f"{path.relative_to(TEMPLATES)}:{number}: {line.strip()}")
    assert offenders == []


def test_charts_mark_the_viewers_days_and_hours(app):
    """The recurring chart's day ticks fall on the viewer's midnights and its tooltips name their zone;
    the duration sparkline's tooltips too."""
    from types import SimpleNamespace

    from itsm.automation.dashboard import duration_chart
    from itsm.automation.recurring_health import chart

    app.config["TIME_ZONE"] = "Asia/Tokyo"  # the viewer's zone when no one is logged in
    now = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)  # 21:00 in Tokyo
    run = SimpleNamespace(started_at=datetime(2027, 3, 9, 16, 30, tzinfo=UTC), duration_seconds=1.5, status="ok",
                          total_created=2)
    with app.test_request_context("/"):
        svg = str(chart([run], now))
        spark = str(duration_chart("ping", [(0.5, "succeeded", datetime(2027, 3, 9, 16, 30, tzinfo=UTC))]))
    assert "2027-03-10 01:00 Asia/Tokyo" in svg  # the hour from 16:00 UTC, in Tokyo
    labels = re.findall(r"<text x=\"([\d.]+)\" y=\"\d+\">(\w{3} \d\d)</text>", svg)
    assert [name for _, name in labels] == ["Thu 04", "Fri 05", "Sat 06", "Sun 07", "Mon 08", "Tue 09", "Wed 10"]
    # Tokyo's midnight of the 10th is 15:00 UTC on the 9th: 21 hours before now, of 168.
    x = float(dict((n, x) for x, n in labels)["Wed 10"])
    assert abs(x - (44 + (168 - 21) * (840 - 44) / 168)) < 0.2
    assert "2027-03-10 01:30 Asia/Tokyo succeeded" in spark
