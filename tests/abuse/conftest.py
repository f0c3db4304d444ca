"""Fixtures for the abuse tests: a desk with one of everything, a fingerprint of the database,
and login counters that start (and end) at zero."""

from __future__ import annotations

import io
import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from itsm.extensions import db
from tests import factories


def database_dump() -> str:
    """Every row of every table, as text: equal dumps mean nothing was written."""
    chunks = []
    for table in db.metadata.sorted_tables:
        rows = db.session.execute(sa.select(table).order_by(*table.primary_key.columns)).all()
        chunks.append(table.name + "\x1e" + "\x1e".join("\x1f".join(map(str, row)) for row in rows))
    db.session.rollback()
    return "\x1d".join(chunks)


def database_fingerprint() -> str:
    """Equal when the dumps are equal; on PostgreSQL one round trip instead of one per table."""
    if db.engine.dialect.name != "postgresql":
        return database_dump()
    quote = db.engine.dialect.identifier_preparer.quote
    parts = [f"(SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {quote(t.name)} x)"
             for t in db.metadata.sorted_tables]
    row = db.session.execute(sa.text("SELECT " + ", ".join(parts))).one()
    db.session.rollback()
    return ",".join(row)


@pytest.fixture
def dump(app):
    """``dump()`` for every row as text; ``dump.fingerprint()`` for a cheaper "did anything change"."""

    def take() -> str:
        with app.app_context():
            return database_dump()

    def fingerprint() -> str:
        with app.app_context():
            return database_fingerprint()

    take.fingerprint = fingerprint
    return take


@pytest.fixture
def seeded(app, ids):
    """One of every object a page is about, so every page (and every form on it) renders."""
    from werkzeug.datastructures import FileStorage

    from itsm.attachments.service import attach
    from itsm.dbtypes import utcnow
    from itsm.inbound import mailboxes
    from itsm.inbound.models import InboundMessage
    from itsm.mail.models import EmailMessage
    from itsm.mail.preferences import unsubscribe_token
    from itsm.recurring.models import Holiday
    from itsm.schedules import service as schedules
    from itsm.schedules.validation import Definition
    from itsm.users import links
    from itsm.users.account_mail import invite_user
    from itsm.users.models import User
    from jobs.models import JobRun

    with app.app_context():
        now = utcnow()
        ticket = factories.make_ticket("Printer on fire", requester_email="requester@example.com")
        template = factories.make_template("Weekly check", start=now + timedelta(days=1),
                                           recurrence_interval="weekly")
        occurrence = factories.make_ticket("Weekly check (1)")
        occurrence.template_id, occurrence.occurrence_at = template.id, now
        holiday = Holiday(day=(now + timedelta(days=30)).date(), name="Founders' day")
        message = EmailMessage(kind="test", to_address="x@example.com", subject="s", body_text="b", status="failed",
                               attempts=3, last_error="boom")
        run = JobRun(job_id="abuse-run", task_name="t.add", queue="default", status="failed", created_at=now)
        db.session.add_all([holiday, message, run])
        task = schedules.save(Definition(name="abuse task", task="t.add", kind="interval", every=5,
                                         period="minutes", args=[1, 2]))
        reset_user = factories.make_user("reset.me@example.com", name="Reset Me")
        invited = invite_user(email="invited@example.com", name="Invited", role="agent",
                              actor=db.session.get(User, ids.admin))
        mailbox = mailboxes.create(name="abuse box", host="imap.example.invalid", port=993, security="tls",
                                   username="desk@example.com", password="secret")
        db.session.add(InboundMessage(mailbox_id=mailbox.id, message_id="m1@example.com", uid=1, uidvalidity=1,
                                      sender="pat@example.com", subject="Broken", outcome="failed", reason="boom"))
        attachment, = attach(ticket, [FileStorage(io.BytesIO(b"log line\n"), filename="vpn.log")],
                             db.session.get(User, ids.admin))
        db.session.commit()
        seeds = SimpleNamespace(ticket=ticket.id, template=template.id, attachment=attachment.id, mailbox=mailbox.id,
                                attachment_name=attachment.filename, holiday=holiday.id, message=message.id,
                                run=run.id, task=task.id, reset_user=reset_user.id, invited=invited.id,
                                column=ids.columns["Waiting"], agent=ids.agent, admin=ids.admin)

    def token(endpoint: str) -> str:
        """A fresh, valid token for a token page (a used one stops working)."""
        with app.app_context():
            if endpoint == "account.reset_password":
                return links.make_token(db.session.get(User, seeds.reset_user), "reset")
            if endpoint == "account.accept_invitation":
                return links.make_token(db.session.get(User, seeds.invited), "invite")
            return unsubscribe_token("requester@example.com")

    seeds.token = token
    return seeds


SAMPLES = {"ticket_id": "ticket", "user_id": "agent", "column_id": "column", "holiday_id": "holiday",
           "message_id": "message", "run_id": "run", "task_id": "task", "attachment_id": "attachment",
           "mailbox_id": "mailbox", "name": "attachment_name", "blocked_id": "mailbox"}


def page_urls(app, seeds) -> list[tuple[str, str]]:
    """(endpoint, url) of every GET page, a recurring template's pages as well as a ticket's."""
    skip = ("static", "health.", "rq_dashboard.", "backups.download")
    out = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint.startswith(skip):
            continue
        variants = [{}]
        if "ticket_id" in rule.arguments:
            variants = [{"ticket": seeds.ticket}, {"ticket": seeds.template}]
        for variant in variants:
            url = rule.rule
            for arg in rule.arguments:
                if arg == "token":
                    value = "{token}"  # filled in per request
                else:
                    value = variant.get("ticket") if arg == "ticket_id" else getattr(seeds, SAMPLES[arg])
                url = re.sub(rf"<(?:[^:<>]+:)?{arg}>", str(value), url)
            out.append((rule.endpoint, url))
    return out
