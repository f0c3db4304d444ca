"""Inbound mail through a real IMAP server (Dovecot): new mail opens tickets, replies thread onto theirs,
noise is recorded and ignored, and every message counts exactly once."""

from __future__ import annotations

import os
from email.message import EmailMessage as Mime
from email.utils import make_msgid

import pytest
import sqlalchemy as sa

from itsm.attachments.models import Attachment
from itsm.extensions import db
from itsm.inbound import imap, intake, mailboxes
from itsm.inbound.models import BlockedSender, InboundMessage, Mailbox
from itsm.mail.models import EmailMessage
from itsm.tickets.models import Comment, Ticket
from tests import factories


@pytest.fixture
def app_config():
    return {"MAIL_INBOUND_ALLOW_PLAIN": True, "BASE_URL": "https://desk.example.org", "JOBS_EAGER": False}


@pytest.fixture
def box(app, imap_server):
    """A mailbox on the test server, as an admin would add it."""
    with app.app_context():
        made = mailboxes.create(name="helpdesk", host=imap_server.host, port=imap_server.port, security="plain",
                                username="desk@example.com", password="secret")
        return made.id


def mail(subject="Printer on fire", body="Smoke from tray 2.\n", sender="pat@example.com", **headers) -> bytes:
    message = Mime()
    message["From"] = f"Pat Requester <{sender}>"
    message["To"] = "desk@example.com"
    message["Subject"] = subject
    message["Message-ID"] = headers.pop("message_id", None) or make_msgid(domain="example.com")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return bytes(message)


def fetch(box_id: int) -> imap.Report:
    return imap.fetch(db.session.get(Mailbox, box_id))


def ledger() -> list[InboundMessage]:
    db.session.expire_all()
    return db.session.scalars(sa.select(InboundMessage).order_by(InboundMessage.id)).all()


def test_new_mail_opens_a_ticket_with_its_files_and_is_flagged_after_the_commit(app, imap_server, box, ids):
    message = mail()
    with_file = Mime()
    with_file["From"], with_file["To"], with_file["Subject"] = "kim@example.com", "desk@example.com", "Fwd: Re: VPN"
    with_file["Message-ID"] = make_msgid(domain="example.com")
    with_file.set_content("The log is attached.\n")
    log = os.urandom(3000)
    with_file.add_attachment(log, maintype="application", subtype="octet-stream", filename="vpn.log")
    imap_server.append("desk@example.com", message)
    imap_server.append("desk@example.com", bytes(with_file))
    with app.app_context():
        report = fetch(box)
        assert (report.fetched, report.outcomes, report.error) == (2, {"ticket": 2}, None)
        first, second = db.session.scalars(sa.select(Ticket).order_by(Ticket.id)).all()
        assert (first.title, first.requester_email, first.column_id) == ("Printer on fire", "pat@example.com",
                                                                        ids.columns["New"])
        assert "Smoke from tray 2." in first.description and second.title == "VPN"
        files = db.session.scalars(sa.select(Attachment).where(Attachment.ticket_id == second.id)).all()
        assert [(a.filename, a.size) for a in files] == [("vpn.log", 3000)]
        rows = ledger()
        assert [(r.outcome, r.ticket_id, r.sender) for r in rows] == [
            ("ticket", first.id, "pat@example.com"), ("ticket", second.id, "kim@example.com")]
        assert all(r.done_on_server_at is not None and r.raw_sha256 for r in rows)
        assert fetch(box).fetched == 0  # nothing new: the ledger and the last UID, not the \Seen flag
    assert all("\\Seen" in flags for _, flags, _ in imap_server.messages("desk@example.com"))


def test_a_crash_between_commit_and_flag_imports_once_and_only_flags_next_time(app, imap_server, box):
    uid = imap_server.append("desk@example.com", mail())
    with app.app_context():
        mailbox = db.session.get(Mailbox, box)
        uidvalidity = imap_server.uidvalidity("desk@example.com", "INBOX")
        intake.receive(imap_server.messages("desk@example.com")[0][2], mailbox, uid=uid, uidvalidity=uidvalidity)
        # ... and the process died here: committed, not flagged, the mailbox's last UID not moved on.
        report = fetch(box)  # the next fetch finds the ledger row: it only flags
        assert (report.fetched, report.flagged, report.outcomes) == (0, 1, {})
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Ticket)) == 1
        [row] = ledger()
        assert row.done_on_server_at is not None and row.attempts == 1
    assert "\\Seen" in imap_server.messages("desk@example.com")[0][1]
    with app.app_context():  # read from the start again (a lost last UID): the copy is known by its UID
        mailbox = db.session.get(Mailbox, box)
        mailbox.last_uid = 0
        db.session.commit()
        assert fetch(box).outcomes == {}
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Ticket)) == 1


def test_the_same_message_in_two_mailboxes_and_piped_makes_one_ticket(app, imap_server, box, runner):
    imap_server.add_user("it@example.com", "secret2")
    raw = mail(message_id="<same-123@example.com>")
    imap_server.append("desk@example.com", raw)
    imap_server.append("it@example.com", raw)
    with app.app_context():
        other = mailboxes.create(name="it", host=imap_server.host, port=imap_server.port, security="plain",
                                 username="it@example.com", password="secret2").id
        assert fetch(box).outcomes == {"ticket": 1}
        assert fetch(other).outcomes == {"ignored": 1}
    piped = runner.invoke(args=["mail", "receive", "--mailbox", "helpdesk"], input=raw)
    assert piped.exit_code == 0 and piped.output.startswith("ignored"), piped.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Ticket)) == 1
        assert [r.outcome for r in ledger()] == ["ticket", "ignored", "ignored"]
        assert all("duplicate" in r.reason for r in ledger()[1:])


def outgoing_id(ticket_id: int) -> str:
    """The Message-ID our "we received your request" email went out with (as delivery records it)."""
    from itsm.inbound import refs

    row = db.session.scalar(sa.select(EmailMessage).where(EmailMessage.ticket_id == ticket_id,
                                                          EmailMessage.kind == "ticket_created"))
    return refs.message_id(row.id, ticket_id)


def test_replies_thread_by_header_by_token_and_by_subject_tag_only_for_people_on_the_ticket(app, imap_server, box,
                                                                                          ids):
    with app.app_context():
        ticket = factories.make_ticket("Laptop", requester_email="pat@example.com", assignee_id=ids.agent)
        tid, our_id = ticket.id, outgoing_id(ticket.id)
        from itsm.inbound import refs

        token = refs.token(tid)
    imap_server.append("desk@example.com", mail(f"Re: [#{tid}] We received your request: Laptop", "Thanks!\n",
                                                In_Reply_To=our_id, References=our_id))
    imap_server.append("desk@example.com", mail("Re: your mail", f"Still broken.\n\n> [ref:{token}]\n"))
    imap_server.append("desk@example.com", mail(f"[#{tid}] one more thing", "Also the charger.\n"))
    imap_server.append("desk@example.com", mail(f"[#{tid}] me too", "I am someone else.\n",
                                                sender="stranger@evil.example"))
    with app.app_context():
        report = fetch(box)
        assert report.outcomes == {"comment": 3, "ticket": 1}, [(r.outcome, r.reason) for r in ledger()]
        comments = db.session.scalars(sa.select(Comment).where(Comment.ticket_id == tid).order_by(Comment.id)).all()
        assert [(c.body, c.author_email, c.is_public) for c in comments] == [
            ("Thanks!", "pat@example.com", True), ("Still broken.", "pat@example.com", True),
            ("Also the charger.", "pat@example.com", True)]
        rows = ledger()
        assert [r.reason.split(";")[0] for r in rows[:3]] == [
            "found by its In-Reply-To/References", "found by the reference in its text", "found by the subject tag"]
        stranger = db.session.get(Ticket, rows[3].ticket_id)
        assert stranger.id != tid and stranger.requester_email == "stranger@evil.example"
        assert "which this sender is not on" in rows[3].reason
        # The assignee heard of each reply; the requester was not mailed their own words.
        told = db.session.scalars(sa.select(EmailMessage.kind).where(EmailMessage.ticket_id == tid)).all()
        assert told.count("ticket_replied") == 3 and "ticket_commented" not in told


def test_noise_is_recorded_and_ignored(app, imap_server, box):
    with app.app_context():
        ticket = factories.make_ticket("Mailed", requester_email="pat@example.com")
        sent = db.session.scalar(sa.select(EmailMessage).where(EmailMessage.ticket_id == ticket.id))
        sent.message_id = outgoing_id(ticket.id).strip("<>")
        db.session.add(BlockedSender(pattern="spam.example"))
        db.session.commit()
        sent_id = sent.id
    bounce = (
        "From: MAILER-DAEMON@mx.example.com\r\nTo: desk@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-1@mx.example.com>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n"
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n"
        "Final-Recipient: rfc822; pat@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"--B\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: <{sent.message_id}>\r\n"
        "Subject: We received your request\r\n\r\n...\r\n--B--\r\n").encode()
    for raw in (mail("Out of office", "I am away.\n", Auto_Submitted="auto-replied"),
                mail("Newsletter", "Buy now\n", Precedence="bulk"),
                bounce,
                mail("Our own", "loop\n", message_id="<itsm-outbox-99@desk.example.org>"),
                mail("Blocked", "spam\n", sender="x@spam.example")):
        imap_server.append("desk@example.com", raw)
    with app.app_context():
        assert fetch(box).outcomes == {"ignored": 5}
        reasons = [r.reason for r in ledger()]
        assert reasons[0].startswith("auto-reply") and reasons[1].startswith("auto-reply")
        assert reasons[2].startswith("bounce") and reasons[3].startswith("own mail") and reasons[4] == "blocked sender"
        assert db.session.get(EmailMessage, sent_id).status == "bounced"
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Ticket)) == 1


def test_a_reply_to_a_done_ticket_reopens_it_and_the_cap_stops_a_runaway_sender(app, imap_server, box, ids):
    app.config["MAIL_INBOUND_MAX_PER_SENDER_HOUR"] = 2
    with app.app_context():
        ticket = factories.make_ticket("Finished", column_name="Done", requester_email="pat@example.com")
        tid, our_id = ticket.id, outgoing_id(ticket.id)
    imap_server.append("desk@example.com", mail("Re: Finished", "It broke again.\n", In_Reply_To=our_id))
    for n in range(3):
        imap_server.append("desk@example.com", mail(f"Loop {n}", "auto\n", sender="robot@example.net"))
    with app.app_context():
        assert fetch(box).outcomes == {"reopened": 1, "ticket": 2, "ignored": 1}
        assert db.session.get(Ticket, tid).column_id == ids.columns["New"]
        assert ledger()[-1].reason.startswith("over the cap: 2 new tickets an hour from robot@example.net")


def test_a_message_that_fails_is_undone_alone_and_the_rest_of_its_batch_commits_with_its_emails(app, imap_server, box,
                                                                                                 monkeypatch):
    from itsm.mail import outbox

    queued = []

    def queue_sends(ids):  # only committed rows may be handed to a worker: it would find nothing else
        with db.engine.connect() as other:
            committed = other.scalars(sa.select(EmailMessage.id).where(EmailMessage.id.in_(ids))).all()
        assert sorted(committed) == sorted(ids), "a send job queued before its row was committed"
        queued.extend(ids)

    monkeypatch.setattr(outbox, "queue_sends", queue_sends)
    real_keep_raw = intake._keep_raw

    def keep_raw(row, raw):  # after its ticket and "we received your request" email were written
        if row.subject == "Broken":
            raise RuntimeError("the store is full")
        real_keep_raw(row, raw)

    monkeypatch.setattr(intake, "_keep_raw", keep_raw)
    for n, subject in enumerate(["First", "Broken", "Third"]):
        imap_server.append("desk@example.com", mail(subject, sender=f"user{n}@example.com"))
    with app.app_context():
        assert fetch(box).outcomes == {"ticket": 2, "error": 1}
        assert sorted(db.session.scalars(sa.select(Ticket.title))) == ["First", "Third"]
        first, broken, third = ledger()
        assert (broken.outcome, broken.attempts, broken.ticket_id, broken.done_on_server_at) == ("error", 1, None, None)
        assert "RuntimeError: the store is full" in broken.reason
        assert first.done_on_server_at and third.done_on_server_at
        emails = db.session.scalars(sa.select(EmailMessage.id).order_by(EmailMessage.id)).all()
        # The batch's emails, once: none lost with the failed message's savepoint, none of its own left over.
        assert len(emails) == 2 and sorted(queued) == emails
    assert [flags for _, flags, _ in imap_server.messages("desk@example.com")] == [("\\Seen",), (), ("\\Seen",)]
    monkeypatch.setattr(intake, "_keep_raw", real_keep_raw)
    with app.app_context():  # tried again on the next fetch
        assert fetch(box).outcomes == {"ticket": 1}
        assert ledger()[1].attempts == 2 and ledger()[1].outcome == "ticket"
    assert all("\\Seen" in flags for _, flags, _ in imap_server.messages("desk@example.com"))


def test_a_server_that_is_down_is_an_error_on_the_mailbox_alerted_once_then_recovered(app, imap_server, box):
    imap_server.append("desk@example.com", mail())
    imap_server.stop()
    with app.app_context():
        for _ in range(4):
            report = fetch(box)
            assert report.error and "cannot log in" in report.error
        mailbox = db.session.get(Mailbox, box)
        assert mailbox.failures_in_row == 4 and mailbox.alerted_at is not None and mailbox.last_error
        alerts = db.session.scalars(sa.select(EmailMessage).where(EmailMessage.kind == "mailbox_failing")).all()
        assert len(alerts) == 1  # admins (who want system failures) told once for the episode
    imap_server.start()
    with app.app_context():
        assert fetch(box).outcomes == {"ticket": 1}
        mailbox = db.session.get(Mailbox, box)
        assert (mailbox.failures_in_row, mailbox.alerted_at, mailbox.last_error) == (0, None, None)


def test_the_pipe_exits_75_while_the_database_is_down_and_the_retry_imports_once(app, runner, box, tmp_path):
    raw = mail(message_id="<piped-1@example.com>")
    from itsm import create_app
    from tests.conftest import base_config

    down = create_app(base_config("postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
                                  MAIL_INBOUND_ALLOW_PLAIN=True))
    failed = down.test_cli_runner().invoke(args=["mail", "receive", "--mailbox", "helpdesk"],
                                                             input=raw)
    assert failed.exit_code == 75 and "try again later" in failed.stderr, (failed.output, failed.stderr)
    first = runner.invoke(args=["mail", "receive", "--mailbox", "helpdesk"], input=raw)
    again = runner.invoke(args=["mail", "receive", "--mailbox", "helpdesk"], input=raw)
    assert first.exit_code == 0 and first.output.startswith("ticket #"), first.output
    assert again.exit_code == 0 and again.output.startswith("ignored"), again.output
    garbage = runner.invoke(args=["mail", "receive", "--mailbox", "helpdesk"], input=b"")
    assert garbage.exit_code == 65
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Ticket)) == 1


def test_mailboxes_from_scripts(app, runner, imap_server, monkeypatch):
    monkeypatch.setenv("DESK_PW", "secret")
    added = runner.invoke(args=["mail", "mailboxes", "add", "desk", "--host", imap_server.host, "--port",
                                str(imap_server.port), "--security", "plain", "--user", "desk@example.com",
                                "--password-env", "DESK_PW"])
    assert added.exit_code == 0, added.output
    tested = runner.invoke(args=["mail", "mailboxes", "test", "desk"])
    assert tested.exit_code == 0 and "logged in" in tested.output and "holds 0 messages" in tested.output
    listed = runner.invoke(args=["mail", "mailboxes", "list"])
    assert "desk\tdesk@example.com@" in listed.output and "secret" not in listed.output
    with app.app_context():
        assert "secret" not in db.session.scalar(sa.select(Mailbox.password_encrypted))
    again = runner.invoke(args=["mail", "mailboxes", "add", "desk", "--host", "x", "--user", "u",
                                "--password-env", "DESK_PW"])
    assert again.exit_code == 1 and "already" in again.output
    unknown = runner.invoke(args=["mail", "mailboxes", "test", "nope"])
    assert unknown.exit_code == 1 and "there is no mailbox 'nope'" in unknown.output
    disabled = runner.invoke(args=["mail", "mailboxes", "disable", "desk"])
    assert disabled.exit_code == 0
    assert runner.invoke(args=["mail", "fetch"]).exit_code == 1  # no enabled mailbox


@pytest.mark.parametrize("cut_at", [0.3, 0.6, 0.9])
def test_an_imap_connection_cut_mid_batch_loses_nothing_and_imports_nothing_twice(app, imap_server, cut_at):
    from tests.relay import TcpRelay

    relay = TcpRelay(f"imap://{imap_server.host}:{imap_server.port}", default_port=143)
    relay.restore()
    sent = {}
    for n in range(20):
        raw = mail(f"Request {n}", f"Body {n}\n" + os.urandom(20_000).hex() + "\n")
        sent[f"Request {n}"] = raw
        imap_server.append("desk@example.com", raw)
    with app.app_context():
        box = mailboxes.create(name="relayed", host=relay.host, port=relay.port, security="plain",
                               username="desk@example.com", password="secret").id
        relay.cut_after(int(sum(map(len, sent.values())) * cut_at))  # somewhere inside one batch's FETCH
        first = imap.fetch(db.session.get(Mailbox, box), batch=5)
        assert first.error is not None and first.fetched < 20
        relay.restore()
        second = imap.fetch(db.session.get(Mailbox, box), batch=5)
        assert second.error is None
        titles = sorted(db.session.scalars(sa.select(Ticket.title)))
        assert titles == sorted(sent)  # every message once: none lost, none twice
        rows = ledger()
        assert len(rows) == 20 and all(r.outcome == "ticket" and r.attempts == 1 for r in rows)
        assert all(r.done_on_server_at is not None for r in rows)
    relay.cut()
    assert all("\\Seen" in flags for _, flags, _ in imap_server.messages("desk@example.com"))


def test_a_wrong_password_is_one_line_and_leaves_no_socket_open(app, imap_server):
    with app.app_context():
        box = mailboxes.create(name="wrong", host=imap_server.host, port=imap_server.port, security="plain",
                               username="desk@example.com", password="not-it")
        report = imap.fetch(box)
        assert report.error.startswith(f"cannot log in to {imap_server.host}:{imap_server.port}:")
        assert "\n" not in report.error


def test_an_agent_replies_by_email_through_the_thread_but_not_by_a_subject_tag(app, imap_server, box, ids):
    with app.app_context():
        ticket = factories.make_ticket("Laptop", requester_email="pat@example.com")
        tid, our_id = ticket.id, outgoing_id(ticket.id)
    imap_server.append("desk@example.com", mail(f"Re: [#{tid}] Laptop", "Try a restart.\n",
                                                sender="agent@example.com", In_Reply_To=our_id))
    imap_server.append("desk@example.com", mail(f"[#{tid}] Laptop", "Closing this.\n", sender="agent@example.com"))
    with app.app_context():
        assert fetch(box).outcomes == {"comment": 1, "ticket": 1}
        [reply] = db.session.scalars(sa.select(Comment).where(Comment.ticket_id == tid)).all()
        assert (reply.author_id, reply.author_email, reply.is_public, reply.body) == (ids.agent, None, True,
                                                                                      "Try a restart.")
        # A public reply by the agent: mailed to the requester like one typed on the ticket page.
        mailed = db.session.scalars(sa.select(EmailMessage).where(EmailMessage.ticket_id == tid,
                                                                  EmailMessage.kind == "ticket_commented")).all()
        assert [m.to_address for m in mailed] == ["pat@example.com"] and "Try a restart." in mailed[0].body_text
        # The forged-looking one (an agent's address, only a subject tag) is a new ticket, with a warning.
        row = ledger()[-1]
        assert row.outcome == "ticket" and row.ticket_id != tid
        assert "agent's" in row.reason and "which this sender is not on" in row.reason
