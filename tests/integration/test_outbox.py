"""The email outbox with a real SMTP server, a real worker and Redis: nothing lost, nothing twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.mail.models import EmailMessage
from itsm.mail.outbox import OutboxError, checked_address, one_line, queue_email
from itsm.mail.tasks import flush_outbox, send_email
from itsm.tickets import service
from itsm.tickets.models import Ticket
from jobs.models import JobRun
from tests import factories
from tests.processes import wait_for


@pytest.fixture
def app_config(mailserver):
    return mailserver.app_config()


def outbox() -> list[EmailMessage]:
    db.session.expire_all()
    return db.session.scalars(sa.select(EmailMessage).order_by(EmailMessage.id)).all()


def status_of_first(app) -> str:
    with app.app_context():
        return outbox()[0].status


def test_the_email_is_written_with_the_change_and_only_with_it(app, ids, client, auth):
    auth.login()
    response = auth.post("/tickets/new", {"title": "Printer on fire", "priority": "3", "column_id": ids.columns["New"],
                                          "assignee_id": "0", "requester_email": "pat@example.com"})
    assert response.status_code == 302
    with app.app_context():
        [message] = outbox()
        ticket = db.session.scalar(sa.select(Ticket))
        assert (message.to_address, message.kind, message.ticket_id) == ("pat@example.com", "ticket_created", ticket.id)
        assert f"#{ticket.id}" in message.subject and "Printer on fire" in message.body_text
        assert "<strong>" in message.body_html
        # A change that rolls back leaves no email behind.
        service.add_comment(ticket, None, "public reply")
        db.session.rollback()
        assert len(outbox()) == 1


def test_who_gets_what(app, ids):
    with app.app_context():
        admin = factories.user("admin@example.com")
        ticket = factories.make_ticket("VPN drops", requester_email="pat@example.com")
        ticket = db.session.merge(ticket)
        service.add_comment(ticket, admin, "internal note", is_public=False)
        service.update_ticket(ticket, admin, assignee_id=ids.agent)
        service.update_ticket(ticket, factories.user("agent@example.com"), assignee_id=ids.agent)  # no change
        service.add_comment(ticket, admin, "We are on it", is_public=True)
        service.move_ticket(ticket, factories.column("In progress"), admin)
        service.move_ticket(ticket, factories.column("Done"), admin)
        db.session.commit()
        sent = [(m.kind, m.to_address) for m in outbox()]
        assert sent == [("ticket_created", "pat@example.com"), ("ticket_assigned", "agent@example.com"),
                        ("ticket_commented", "pat@example.com"), ("ticket_moved", "pat@example.com"),
                        ("ticket_done", "pat@example.com")]
        assert "We are on it" in outbox()[2].body_text


def test_header_injection_and_bad_addresses_are_impossible(app):
    assert one_line("Hello\r\nBcc: victim@example.com") == "Hello Bcc: victim@example.com"
    with pytest.raises(OutboxError):
        checked_address("pat@example.com\nBcc: x@example.com")
    with app.app_context(), pytest.raises(OutboxError):
        queue_email("test", "not-an-address", "Hi", "test", sender="x")


def test_a_worker_delivers_each_message_exactly_once(app, procs, redis, mailserver):
    mailserver.start()
    with app.app_context():
        factories.make_ticket("Laptop", requester_email="pat@example.com")
        [message] = outbox()
    procs.worker(**mailserver.env())
    wait_for(lambda: len(mailserver.messages) == 1, timeout=20, message="the email at the SMTP server")
    wait_for(lambda: status_of_first(app) == "sent", timeout=10, message="the row marked sent")
    with app.app_context():
        [message] = outbox()
        assert message.attempts == 1 and message.sent_at is not None
        # A duplicate job or a flush finds the row sent and sends nothing.
        assert send_email.apply((message.id,))["sent"] is False
        assert flush_outbox.apply()["queued"] == 0
    got = mailserver.messages[0]
    assert got["To"] == "pat@example.com" and got["From"] == "desk@example.com" and "Laptop" in got["Subject"]
    # Our Message-ID names the row and (signed) the ticket, is kept with the row, and marks the mail automatic.
    assert message.message_id.startswith(f"itsm-outbox-{message.id}.{message.ticket_id}.")
    assert got["Message-ID"] == f"<{message.message_id}>"
    assert got["Auto-Submitted"] == "auto-generated" and got["X-Auto-Response-Suppress"] == "All"


def test_smtp_down_retries_with_growing_delays_then_delivers_once(app, procs, redis, mailserver):
    with app.app_context():
        factories.make_ticket("Monitor", requester_email="pat@example.com")
    procs.worker(**mailserver.env())

    def attempts() -> list[JobRun]:
        with app.app_context():
            rows = db.session.scalars(sa.select(JobRun).where(JobRun.task_name == "send_email")
                                      .order_by(JobRun.attempt)).all()
            db.session.expunge_all()
            return rows

    wait_for(lambda: len([r for r in attempts() if r.status == "retrying"]) >= 2, timeout=30,
             message="two failed attempts")
    mailserver.start()
    wait_for(lambda: len(mailserver.messages) == 1, timeout=60, message="delivery once SMTP is up")
    wait_for(lambda: any(r.status == "succeeded" for r in attempts()), timeout=10, message="the last attempt")
    runs = attempts()
    # Celery's schedule: retry n waits a random time up to min(600, 2**n) seconds (full jitter).
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert later.scheduled_for is not None
        assert later.scheduled_for - earlier.finished_at <= timedelta(seconds=2 ** (earlier.attempt - 1) + 1)
    with app.app_context():
        [message] = outbox()
        assert message.status == "sent" and message.attempts == len(runs) >= 3
    assert len(mailserver.messages) == 1


def test_redis_down_keeps_the_email_pending_until_flush(app, ids, client, auth, procs, redis, mailserver):
    mailserver.start()
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there: Redis is down
    app.extensions.pop("itsm_redis", None)
    auth.login()
    response = auth.post("/tickets/new", {"title": "Badge reader", "priority": "2", "column_id": ids.columns["New"],
                                          "assignee_id": "0", "requester_email": "sam@example.com"})
    assert response.status_code == 302  # the ticket is saved all the same
    from tests.conftest import TEST_REDIS_URL

    app.config["REDIS_URL"] = TEST_REDIS_URL  # Redis is back; the every-minute flush runs
    app.extensions.pop("itsm_redis", None)
    with app.app_context():
        [message] = outbox()
        assert message.status == "pending" and message.next_attempt_at > utcnow()
        assert flush_outbox.apply()["queued"] == 0  # a row just written has its own job: not due yet
        # A minute on: its job never ran, so the flush hands it to one.
        db.session.execute(sa.update(EmailMessage).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        assert flush_outbox.apply()["queued"] == 1
        assert flush_outbox.apply()["queued"] == 0  # taken: the next flush leaves it to that job
    procs.worker(**mailserver.env())
    wait_for(lambda: len(mailserver.messages) == 1, timeout=20, message="the flushed email")
    wait_for(lambda: status_of_first(app) == "sent", timeout=10, message="the row marked sent")


def test_outbox_page_retry_and_test_email(app, client, auth, redis):
    with app.app_context():
        factories.make_ticket("Scanner", requester_email="pat@example.com")
        db.session.execute(sa.update(EmailMessage).values(status="failed", attempts=6,
                                                          last_error="SMTPServerDisconnected: gone"))
        db.session.commit()
    auth.login()
    page = client.get("/admin/outbox?status=failed").get_data(as_text=True)
    assert "SMTPServerDisconnected: gone" in page and "Retry all failed (1)" in page
    assert client.get("/admin/outbox?status=bogus").status_code == 400
    queued = redis.llen("rq:queue:high")
    assert auth.post("/admin/outbox/1/retry").status_code == 302
    with app.app_context():
        assert outbox()[0].status == "pending" and outbox()[0].last_error is None
    assert auth.post("/admin/outbox/test", {"to": "ops@example.com"}).status_code == 302
    with app.app_context():
        assert [m.kind for m in outbox()] == ["ticket_created", "test"]
    assert redis.llen("rq:queue:high") == queued + 2  # the retried one and the test one are with the worker


def test_preferences_and_unsubscribe_route_correctly(app, ids, client, auth):
    from itsm.mail import preferences

    auth.login_agent()
    assert auth.post("/profile", {}).status_code == 302  # every box unticked: no assignment emails
    page = client.get("/profile").get_data(as_text=True)
    assert "Tickets assigned to me" in page and "System failures" not in page  # admin kinds are for admins
    with app.app_context():
        ticket = factories.make_ticket("Dock", requester_email="Pat@Example.com")
        [created] = outbox()
        assert preferences.unsubscribe_url("pat@example.com") in created.body_text
        service.update_ticket(db.session.merge(ticket), factories.user("admin@example.com"), assignee_id=ids.agent)
        db.session.commit()
        assert [m.kind for m in outbox()] == ["ticket_created"]  # the agent turned assignment emails off
        token = preferences.unsubscribe_token("pat@example.com")
    assert client.get("/unsubscribe/not-a-token").status_code == 404
    page = client.get(f"/unsubscribe/{token}").get_data(as_text=True)
    assert "Stop sending updates" in page  # a GET (a mail scanner) changes nothing
    assert auth.post(f"/unsubscribe/{token}").status_code == 200
    with app.app_context():
        service.add_comment(db.session.merge(ticket), None, "Any news?")
        db.session.commit()
        assert [m.kind for m in outbox()] == ["ticket_created"]  # the requester unsubscribed


def test_admins_hear_of_final_failures(app, ids):
    from itsm.mail.notify import system_failure

    with app.app_context():
        quiet = factories.make_user("quiet@example.com", role="admin")
        quiet.notify_system_failures = False
        db.session.commit()
        system_failure("backup_database", "job-1", OSError("disk full"), (), {})
        system_failure("send_email", "job-2", OSError("smtp down"), (7,), {})  # never about the mailer itself
        assert [(m.kind, m.to_address) for m in outbox()] == [("system_failure", "admin@example.com")]
        assert "backup_database" in outbox()[0].subject and "disk full" in outbox()[0].body_text


def test_a_missing_template_fails_visibly_and_keeps_the_change(app, ids, client, auth):
    with app.app_context():
        ticket = factories.make_ticket("Kept anyway")
        message = queue_email("test", "pat@example.com", "Broken", "no_such_template", ticket_id=ticket.id)
        db.session.commit()
        [row] = outbox()
        assert (row.id, row.status, row.attempts) == (message.id, "failed", 0)
        assert "email/no_such_template.txt" in row.last_error and "TemplateNotFound" in row.last_error
        assert send_email.apply((row.id,))["sent"] is False  # nothing to send until an admin fixes it
    auth.login()
    page = client.get("/admin/outbox?status=failed").get_data(as_text=True)
    assert "TemplateNotFound" in page and "Broken" in page
