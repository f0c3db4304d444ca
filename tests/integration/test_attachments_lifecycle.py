"""Attachments over their life: byte ranges and revalidation, who may fetch what, removal and the cleanup of
unused blobs, recurring templates' files, and backups that restore and verify every file."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import FileStorage

from itsm import create_app
from itsm.attachments import service, store
from itsm.attachments.models import Attachment, Blob, BlobChunk
from itsm.attachments.tasks import cleanup_attachment_blobs
from itsm.backups import service as backups
from itsm.extensions import db
from itsm.recurring.processor import process_due
from itsm.schedules.catalog import entries
from itsm.tickets.models import Comment, Ticket, TicketEvent
from itsm.tickets.service import add_comment
from itsm.users.models import User
from tests import factories
from tests.conftest import PG_ADMIN_URL, AuthActions, base_config, migrate_database


def count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def attach(ticket_id: int, content: bytes, name: str, *, user_id: int | None = None,
           comment: Comment | None = None) -> Attachment:
    """A file attached through the service, committed (the forms are tested in test_attachments.py)."""
    ticket = db.session.get(Ticket, ticket_id)
    actor = db.session.get(User, user_id) if user_id else None
    [attachment] = service.attach(ticket, [FileStorage(io.BytesIO(content), filename=name)], actor, comment)
    db.session.commit()
    return attachment


def url_of(attachment_id: int, ticket_id: int) -> str:
    return f"/tickets/{ticket_id}/attachments/{attachment_id}"


def test_byte_ranges_if_range_and_conditional_requests(app, client, auth, ids):
    content = os.urandom(3 * 1048576 + 12345)  # ranges across chunk boundaries
    sha = hashlib.sha256(content).hexdigest()
    with app.app_context():
        tid = factories.make_ticket("Ranges").id
        aid = attach(tid, content, "disk.img", user_id=ids.admin).id
    auth.login()
    whole = client.get(url_of(aid, tid))
    assert whole.status_code == 200 and whole.headers["Accept-Ranges"] == "bytes" and whole.data == content
    for first, last in ((0, 0), (1048570, 1048590), (1048576, 2097151), (2 * 1048576 - 5, 3 * 1048576 + 10),
                        (len(content) - 7, len(content) - 1)):
        part = client.get(url_of(aid, tid), headers={"Range": f"bytes={first}-{last}"})
        assert part.status_code == 206, (first, last)
        assert part.headers["Content-Range"] == f"bytes {first}-{last}/{len(content)}"
        assert part.data == content[first:last + 1] and part.headers["Content-Length"] == str(last - first + 1)
    suffix = client.get(url_of(aid, tid), headers={"Range": "bytes=-100"})
    assert suffix.status_code == 206 and suffix.data == content[-100:]
    open_ended = client.get(url_of(aid, tid), headers={"Range": f"bytes={len(content) - 10}-"})
    assert open_ended.data == content[-10:]
    beyond = client.get(url_of(aid, tid), headers={"Range": f"bytes={len(content)}-"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{len(content)}"
    several = client.get(url_of(aid, tid), headers={"Range": "bytes=0-1,5-6"})
    assert several.status_code == 200 and several.data == content  # the whole file answers several ranges
    garbage = client.get(url_of(aid, tid), headers={"Range": "lines=1-2"})
    assert garbage.status_code == 200 and garbage.data == content
    # A partial copy of this very file resumes; of another version, the whole file comes.
    resumed = client.get(url_of(aid, tid), headers={"Range": "bytes=10-19", "If-Range": f'"{sha}"'})
    assert resumed.status_code == 206 and resumed.data == content[10:20]
    changed = client.get(url_of(aid, tid), headers={"Range": "bytes=10-19", "If-Range": '"something-else"'})
    assert changed.status_code == 200 and changed.data == content
    fresh = client.get(url_of(aid, tid), headers={"If-None-Match": f'"{sha}"'})
    assert fresh.status_code == 304 and fresh.data == b"" and fresh.headers["ETag"] == f'"{sha}"'
    stale = client.get(url_of(aid, tid), headers={"If-None-Match": '"other"'})
    assert stale.status_code == 200 and stale.data == content
    head = client.head(url_of(aid, tid))
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(content)) and head.data == b""


@pytest.fixture
def files(app, ids):
    """A public and an internal comment's files on one ticket, and a file on another ticket."""
    with app.app_context():
        ticket = factories.make_ticket("Matrix")
        public = add_comment(ticket, None, "public", is_public=True)
        internal = add_comment(ticket, None, "internal", is_public=False)
        db.session.commit()
        other = factories.make_ticket("Other").id
        made = {
            "ticket": (attach(ticket.id, b"on the ticket", "t.txt", user_id=ids.agent).id, ticket.id),
            "public": (attach(ticket.id, b"public comment", "p.txt", comment=public).id, ticket.id),
            "internal": (attach(ticket.id, b"internal comment", "i.txt", comment=internal).id, ticket.id),
            "other": (attach(other, b"other ticket", "o.txt").id, other),
        }
    return made


@pytest.mark.parametrize("kind", ["ticket", "public", "internal", "other"])
@pytest.mark.parametrize("who", ["anonymous", "agent", "admin", "deactivated"])
def test_who_may_fetch_what(app, client, auth, files, kind, who, ids):
    aid, tid = files[kind]
    if who in ("agent", "admin", "deactivated"):
        auth.login("admin@example.com" if who == "admin" else "agent@example.com")
    if who == "deactivated":  # signed in, then an admin turns the account off: the session ends with it
        with app.app_context():
            db.session.get(User, ids.agent).active = False
            db.session.commit()
    response = client.get(url_of(aid, tid))
    if who in ("anonymous", "deactivated"):
        assert response.status_code == 302 and response.location.startswith("/login?next="), response.status_code
    else:
        assert response.status_code == 200 and response.data.decode() in (
            "on the ticket", "public comment", "internal comment", "other ticket")
    # The right attachment id under another ticket's number is not found, whoever asks.
    wrong_ticket = files["other"][1] if kind != "other" else files["ticket"][1]
    if who in ("agent", "admin"):
        assert client.get(url_of(aid, wrong_ticket)).status_code == 404
        assert client.get(url_of(999999, tid)).status_code == 404


def test_removal_needs_the_uploader_or_an_admin_and_a_confirmation(app, client, auth, files, ids):
    aid, tid = files["ticket"]  # attached by the agent
    other_aid, _ = files["public"]  # attached by the system
    auth.login_agent()
    confirm = client.get(f"{url_of(aid, tid)}/delete")
    assert confirm.status_code == 200 and "t.txt" in confirm.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Attachment, aid) is not None  # asking is not removing
    refused = auth.post(f"{url_of(other_aid, tid)}/delete")
    assert refused.status_code == 403
    assert client.get(f"{url_of(other_aid, tid)}/delete").status_code == 403
    no_token = client.post(f"{url_of(aid, tid)}/delete")
    assert no_token.status_code == 400
    removed = auth.post(f"{url_of(aid, tid)}/delete")
    assert removed.status_code == 302 and removed.location.endswith(f"/tickets/{tid}#attachments")
    with app.app_context():
        assert db.session.get(Attachment, aid) is None
        event = db.session.scalar(sa.select(TicketEvent).where(TicketEvent.kind == "detached"))
        assert event.changes == {"attachment": ["t.txt", None]} and event.actor_id == ids.agent
    assert client.get(url_of(aid, tid)).status_code == 404
    page = client.get(f"/tickets/{tid}").get_data(as_text=True)
    assert "removed a file" in page and "t.txt" in page
    auth.logout()
    auth.token = None
    auth.login()  # an admin may remove anyone's
    assert auth.post(f"{url_of(other_aid, tid)}/delete").status_code == 302


def test_the_cleanup_deletes_only_blobs_no_attachment_uses(app, ids):
    with app.app_context():
        first, second = factories.make_ticket("one").id, factories.make_ticket("two").id
        big = os.urandom(2 * 1048576 + 1)
        shared_a = attach(first, big, "a.bin").id
        attach(second, big, "same-bytes.bin")
        lonely = attach(first, b"only here", "lonely.txt").id
        assert (count(Blob), count(BlobChunk)) == (2, 4)
        for attachment_id in (shared_a, lonely):
            service.remove(db.session.get(Attachment, attachment_id), None)
        db.session.commit()
        assert (count(Blob), count(BlobChunk)) == (2, 4)  # removal leaves the bytes to the cleanup
        assert cleanup_attachment_blobs.run() == {"deleted": 1}
        assert (count(Blob), count(BlobChunk)) == (1, 3)
        db.session.execute(sa.delete(Ticket).where(Ticket.id == second))  # a deleted ticket's files go too
        db.session.commit()
        assert count(Attachment) == 0 and store.delete_unused() == 1
        assert (count(Blob), count(BlobChunk)) == (0, 0)
        assert store.delete_unused() == 0
    [entry] = [e for e in entries() if e.task == "cleanup_attachment_blobs"]
    assert entry.cron == "15 4 * * *" and entry.misfire == "once"


def test_a_recurring_templates_files_are_linked_into_each_occurrence(app, ids):
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    with app.app_context():
        template = factories.make_template("Patch check {date}", start=now - timedelta(seconds=30),
                                           recurrence_interval="weekly")
        checklist = attach(template.id, b"1. WSUS\n2. Reboot\n", "checklist.txt", user_id=ids.admin)
        note = add_comment(db.session.get(Ticket, template.id), None, "a note on the template")
        db.session.commit()
        attach(template.id, b"not for occurrences", "note.txt", comment=note)
        process_due(now)
        process_due(now + timedelta(weeks=1))
        occurrences = db.session.scalars(sa.select(Ticket).where(Ticket.template_id == template.id)
                                         .order_by(Ticket.id)).all()
        assert len(occurrences) == 2
        for occurrence in occurrences:
            [linked] = service.of_ticket(occurrence.id)
            assert (linked.filename, linked.sha256, linked.size, linked.from_template, linked.uploaded_by_id) == (
                "checklist.txt", checklist.sha256, checklist.size, True, ids.admin)
        assert count(Blob) == 2  # linked, not copied
        occurrence_id = occurrences[0].id
    # Removing the template's file later leaves the tickets already opened with theirs.
    with app.app_context():
        service.remove(db.session.get(Attachment, checklist.id), None)
        db.session.commit()
        store.delete_unused()
        [kept] = service.of_ticket(occurrence_id)
        assert b"".join(store.read(kept.sha256, 0, kept.size)) == b"1. WSUS\n2. Reboot\n"


@pytest.fixture
def app_config(tmp_path):
    return {"BACKUP_DIR": str(tmp_path / "backups")}


@contextlib.contextmanager
def fresh_database(database_url: str, tmp_path):
    """A new, migrated, empty database of the same kind: a new deployment's after ``flask db upgrade``."""
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
        migrate_database(url)
        yield url
        return
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"itsm_fresh_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
        migrate_database(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_backup_restore_into_a_fresh_database_gives_back_every_file_byte_for_byte(app, runner, database_url,
                                                                                   tmp_path):
    contents = {f"f{i}.bin": os.urandom(size) for i, size in enumerate((1, 1048576, 1048577, 2_600_000))}
    with app.app_context():
        tid = factories.make_ticket("Backed up").id
        made = {name: attach(tid, data, name).id for name, data in contents.items()}
        backup = backups.create_backup()
        assert backup.manifest["attachments"] == {"count": 4, "bytes": sum(map(len, contents.values()))}
    verified = runner.invoke(args=["backup", "verify", backup.name])
    assert verified.exit_code == 0 and "4 attachments reassemble to their SHA-256" in verified.output, verified.output
    with fresh_database(database_url, tmp_path) as url:
        other = create_app(base_config(url, BACKUP_DIR=app.config["BACKUP_DIR"]))
        restored = other.test_cli_runner().invoke(args=["backup", "restore", backup.name, "--yes"])
        assert restored.exit_code == 0, restored.output
        client = other.test_client()
        auth = AuthActions(client)
        auth.login()
        for name, data in contents.items():
            got = client.get(url_of(made[name], tid))
            assert got.status_code == 200 and got.data == data, name
        page = client.get("/admin/backups").get_data(as_text=True)
        assert "Attachments" in page and "4.5 MiB" in page
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


def test_verify_reports_a_flipped_byte_in_a_stored_chunk(app, runner, database_url):
    with app.app_context():
        tid = factories.make_ticket("Damaged").id
        good = attach(tid, b"fine bytes" * 1000, "fine.txt")
        bad = attach(tid, os.urandom(1048576 + 10), "flipped.bin")
        # A byte flipped in the stored chunk (as a disk or a bad restore would), not in the backup file.
        data = bytearray(db.session.scalar(sa.select(BlobChunk.data).where(BlobChunk.sha256 == bad.sha256,
                                                                           BlobChunk.seq == 1)))
        data[3] ^= 0x01
        db.session.execute(sa.update(BlobChunk).where(BlobChunk.sha256 == bad.sha256, BlobChunk.seq == 1)
                           .values(data=bytes(data)))
        db.session.commit()
        backup = backups.create_backup()
        assert good.sha256 != bad.sha256
    result = runner.invoke(args=["backup", "verify", backup.name])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"file {bad.sha256[:12]}: its chunks do not match its SHA-256" in result.output, result.output
    assert json.loads(backup.manifest_path.read_text())["verified"] is False
    with app.app_context():
        db.session.execute(sa.delete(BlobChunk).where(BlobChunk.sha256 == bad.sha256, BlobChunk.seq == 1))
        db.session.commit()
        missing = backups.create_backup()
    result = runner.invoke(args=["backup", "verify", missing.name])
    assert result.exit_code == 1 and "chunk 1 of 2 is missing" in result.output, result.output
