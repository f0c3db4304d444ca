"""/admin/mailboxes: add, edit (the password never shown again), test, disable, delete; the log; blocking."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from itsm.extensions import db
from itsm.inbound import imap
from itsm.inbound.models import BlockedSender, InboundMessage, Mailbox
from tests.integration.test_inbound_mail import mail


@pytest.fixture
def app_config():
    return {"MAIL_INBOUND_ALLOW_PLAIN": True}


def form(imap_server, **overrides) -> dict:
    values = {"name": "helpdesk", "host": imap_server.host, "port": str(imap_server.port), "security": "plain",
              "username": "desk@example.com", "password": "secret", "folder": "INBOX", "after_import": "seen",
              "move_to": "", "column_id": "0", "priority": "2", "category": "Email", "assignee_id": "0",
              "on_closed_reply": "reopen", "enabled": "y"}
    values.update(overrides)
    return values


def test_an_admin_adds_tests_edits_and_deletes_a_mailbox(app, client, auth, imap_server):
    auth.login()
    bad = auth.post("/admin/mailboxes/new", form(imap_server, name="", port="70000"))
    assert bad.status_code == 400 and "This field is required." in bad.get_data(as_text=True)
    assert "Number must be between 1 and 65535." in bad.get_data(as_text=True)
    moved = auth.post("/admin/mailboxes/new", form(imap_server, after_import="move"))
    assert moved.status_code == 400 and "Name the folder to move" in moved.get_data(as_text=True)
    added = auth.post("/admin/mailboxes/new", form(imap_server))
    assert added.status_code == 302, added.get_data(as_text=True)
    twice = auth.post("/admin/mailboxes/new", form(imap_server, name="HelpDesk"))
    assert twice.status_code == 400 and "already" in twice.get_data(as_text=True)
    with app.app_context():
        box = db.session.scalar(sa.select(Mailbox))
        assert box.category == "Email" and "secret" not in box.password_encrypted
        box_id, sealed = box.id, box.password_encrypted
    page = client.get(f"/admin/mailboxes/{box_id}/edit").get_data(as_text=True)
    assert "secret" not in page and sealed not in page
    kept = auth.post(f"/admin/mailboxes/{box_id}/edit", form(imap_server, password="", category="Mail"))
    assert kept.status_code == 302
    with app.app_context():
        box = db.session.get(Mailbox, box_id)
        assert box.password_encrypted == sealed and box.category == "Mail"  # an empty password keeps the old one
    tested = auth.post(f"/admin/mailboxes/{box_id}/test", follow_redirects=True).get_data(as_text=True)
    assert "logged in to" in tested and "holds 0 messages" in tested
    imap_server.stop()
    failed = auth.post(f"/admin/mailboxes/{box_id}/test", follow_redirects=True).get_data(as_text=True)
    assert "cannot log in" in failed
    imap_server.start()
    auth.post(f"/admin/mailboxes/{box_id}/toggle")
    with app.app_context():
        assert db.session.get(Mailbox, box_id).enabled is False
    assert "Delete the mailbox" in client.get(f"/admin/mailboxes/{box_id}/delete").get_data(as_text=True)
    assert auth.post(f"/admin/mailboxes/{box_id}/delete").status_code == 302
    with app.app_context():
        assert db.session.get(Mailbox, box_id) is None


def test_the_log_shows_every_message_filters_and_serves_the_eml_to_admins(app, client, auth, imap_server):
    auth.login()
    auth.post("/admin/mailboxes/new", form(imap_server))
    imap_server.append("desk@example.com", mail("Printer on fire"))
    imap_server.append("desk@example.com", mail("Away", "I am away.\n", Auto_Submitted="auto-replied"))
    with app.app_context():
        box = db.session.scalar(sa.select(Mailbox))
        assert imap.fetch(box).fetched == 2
        ticket_row = db.session.scalar(sa.select(InboundMessage).where(InboundMessage.outcome == "ticket"))
        row_id, box_id = ticket_row.id, box.id
    page = client.get(f"/admin/mailboxes/{box_id}/log").get_data(as_text=True)
    assert "Printer on fire" in page and "new ticket" in page and "auto-reply" in page
    ignored = client.get("/admin/mailboxes/log?outcome=ignored").get_data(as_text=True)
    assert "Away" in ignored and "Printer on fire" not in ignored
    assert client.get("/admin/mailboxes/log?outcome=nonsense").status_code == 400
    assert "Printer" in client.get("/admin/mailboxes/log?q=printer").get_data(as_text=True)
    raw = client.get(f"/admin/mailboxes/messages/{row_id}/raw")
    assert raw.status_code == 200 and b"Subject: Printer on fire" in raw.data
    assert raw.headers["Content-Disposition"].startswith("attachment") and raw.mimetype == "message/rfc822"
    summary = client.get("/admin/mailboxes").get_data(as_text=True)
    assert "helpdesk" in summary and "2 new" in summary
    auth.logout()
    auth.token = None
    auth.login_agent()
    assert client.get("/admin/mailboxes/log").status_code == 403
    assert client.get(f"/admin/mailboxes/messages/{row_id}/raw").status_code == 403


def test_blocking_a_domain(app, client, auth):
    auth.login()
    assert auth.post("/admin/mailboxes/blocked", {"pattern": "@Spam.Example"}).status_code == 302
    with app.app_context():
        [row] = db.session.scalars(sa.select(BlockedSender)).all()
        assert row.pattern == "spam.example"
        row_id = row.id
    assert "spam.example" in client.get("/admin/mailboxes").get_data(as_text=True)
    auth.post(f"/admin/mailboxes/blocked/{row_id}/delete")
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(BlockedSender)) == 0
