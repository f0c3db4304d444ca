"""Fault: the worker running fetch_mail is SIGKILLed in the middle of a batch (messages committed, some
not yet flagged on the server). The next fetch imports every message exactly once."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from itsm.extensions import db
from itsm.inbound import imap, mailboxes
from itsm.inbound.models import InboundMessage, Mailbox
from itsm.tickets.models import Ticket
from tests.integration.test_inbound_mail import mail
from tests.processes import wait_for

MESSAGES = 150


@pytest.fixture
def app_config():
    return {"MAIL_INBOUND_ALLOW_PLAIN": True}


def recorded() -> int:
    db.session.rollback()  # a fresh snapshot each time
    return db.session.scalar(sa.select(sa.func.count()).select_from(InboundMessage))


def test_a_worker_killed_mid_batch_loses_nothing_and_imports_nothing_twice(app, procs, imap_server):
    subjects = [f"Request {n}" for n in range(MESSAGES)]
    for n, subject in enumerate(subjects):  # each from its own sender: the per-sender cap is not what is tested
        imap_server.append("desk@example.com", mail(subject, "details\n" + os.urandom(8000).hex() + "\n",
                                                    sender=f"user{n}@example.com"))
    with app.app_context():
        box = mailboxes.create(name="killed", host=imap_server.host, port=imap_server.port, security="plain",
                               username="desk@example.com", password="secret").id
        worker = procs.worker(MAIL_INBOUND_ALLOW_PLAIN="1")
        from itsm.inbound.tasks import fetch_mail

        fetch_mail.delay()
        wait_for(lambda: recorded() >= 20, timeout=60, message="the worker to import some messages")
        procs.kill(worker)
        done = recorded()
        assert done < MESSAGES, "the worker finished before it was killed: the test proved nothing"
        report = imap.fetch(db.session.get(Mailbox, box))  # the next fetch, after the crash
        assert report.error is None and report.fetched == MESSAGES - done, report
        assert sorted(db.session.scalars(sa.select(Ticket.title))) == sorted(subjects)  # lost 0, twice 0
        rows = db.session.scalars(sa.select(InboundMessage)).all()
        assert len(rows) == MESSAGES and {r.outcome for r in rows} == {"ticket"}
        assert all(r.attempts == 1 and r.done_on_server_at is not None for r in rows)
    assert all("\\Seen" in flags for _, flags, _ in imap_server.messages("desk@example.com"))
