"""Attachments through the real forms: stored with their ticket or comment, listed, served safely."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
from PIL import Image
from sqlalchemy import func
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from itsm.attachments.models import Attachment, Blob, BlobChunk
from itsm.extensions import db
from itsm.tickets.models import Comment, Ticket, TicketEvent
from tests import factories


def png(width: int = 640, height: int = 480) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(out, "PNG")
    return out.getvalue()


PNG = png()


def count(model) -> int:
    return db.session.scalar(db.select(func.count()).select_from(model))


def upload(content: bytes, name: str) -> FileStorage:
    return FileStorage(io.BytesIO(content), filename=name, content_type="application/octet-stream")


@pytest.fixture
def send(client, auth):
    """POST a multipart form as a browser does. Encoded here, in memory: the test client's own encoder
    spools a large body to a temporary file it never closes."""
    def post(url: str, values: dict, **kwargs):
        fields = MultiDict()
        for key, value in {"csrf_token": auth.csrf(), **values}.items():
            for item in value if isinstance(value, list) else [value]:
                fields.add(key, item)
        boundary, body = encode_multipart(fields)
        return client.post(url, data=body, content_type=f"multipart/form-data; boundary={boundary}", **kwargs)
    return post


@pytest.fixture
def ticket_form(ids):
    def build(*files, **overrides) -> dict:
        values = {"title": "VPN drops every hour", "description": "Logs attached", "priority": "2",
                  "column_id": str(ids.columns["New"]), "assignee_id": "0", "requester_email": "",
                  "category": ""}
        values.update(overrides)
        if files:
            values["attachments"] = list(files)
        return values
    return build


def attachments_of(ticket_id: int) -> list[Attachment]:
    return db.session.scalars(db.select(Attachment).where(Attachment.ticket_id == ticket_id)
                              .order_by(Attachment.id)).all()


def test_files_attached_when_a_ticket_is_created_are_listed_and_download_byte_for_byte(app, client, auth, send,
                                                                                        ticket_form):
    auth.login()
    log = os.urandom(2_500_000)  # three chunks: 1 MiB, 1 MiB and the rest
    response = send("/tickets/new", ticket_form(upload(log, "vpn.log"), upload(PNG, "screen.png")))
    assert response.status_code == 302, response.get_data(as_text=True)
    with app.app_context():
        ticket = db.session.scalar(db.select(Ticket))
        files = attachments_of(ticket.id)
        assert [(a.filename, a.size, a.content_type, a.comment_id) for a in files] == [
            ("vpn.log", len(log), "application/octet-stream", None), ("screen.png", len(PNG), "image/png", None)]
        assert files[0].sha256 == hashlib.sha256(log).hexdigest() and files[0].uploaded_by.email == "admin@example.com"
        assert count(Blob) == 3 and count(BlobChunk) == 5  # the log's 3 chunks, the image, its thumbnail
        events = db.session.scalars(db.select(TicketEvent).where(TicketEvent.kind == "attached")
                                    .order_by(TicketEvent.id)).all()
        assert [e.changes["attachment"] for e in events] == [[None, "vpn.log"], [None, "screen.png"]]
        ids_ = [a.id for a in files]
    page = client.get(f"/tickets/{ticket.id}").get_data(as_text=True)
    assert "vpn.log" in page and "screen.png" in page and "2.4 MiB" in page and "attached a file" in page
    assert f'<img src="/tickets/{ticket.id}/attachments/{ids_[1]}/thumbnail"' in page
    assert f'href="/tickets/{ticket.id}/files/{ids_[0]}/vpn.log"' in page
    thumb = client.get(f"/tickets/{ticket.id}/attachments/{ids_[1]}/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/webp"
    assert Image.open(io.BytesIO(thumb.data)).size == (320, 240) and len(thumb.data) < 5000
    assert client.get(f"/tickets/{ticket.id}/attachments/{ids_[0]}/thumbnail").status_code == 404
    got = client.get(f"/tickets/{ticket.id}/files/{ids_[0]}/vpn.log")
    assert got.status_code == 200 and got.data == log
    assert got.headers["Content-Disposition"] == 'attachment; filename="vpn.log"'
    assert got.headers["Content-Type"] == "application/octet-stream"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in got.headers["Content-Security-Policy"]
    assert got.headers["ETag"] == f'"{hashlib.sha256(log).hexdigest()}"'
    assert got.headers["Content-Length"] == str(len(log))
    image = client.get(f"/tickets/{ticket.id}/attachments/{ids_[1]}")
    assert image.data == PNG and image.headers["Content-Type"] == "image/png"
    assert image.headers["Content-Disposition"] == 'inline; filename="screen.png"'
    forced = client.get(f"/tickets/{ticket.id}/attachments/{ids_[1]}?download=1")
    assert forced.headers["Content-Disposition"].startswith("attachment;")


def test_comment_files_public_and_internal_and_an_edit_adds_files(app, client, auth, send, ticket_form):
    auth.login()
    with app.app_context():
        tid = factories.make_ticket("Laptop").id
    r = send(f"/tickets/{tid}/comments", {"body": "Here is the config", "is_public": "y",
                                              "attachments": [upload(b"key=value\n", "router.conf")]})
    assert r.status_code == 302, r.get_data(as_text=True)
    r = send(f"/tickets/{tid}/comments", {"body": "Internal dump",
                                              "attachments": [upload(b"secret\n", "dump.txt")]})
    assert r.status_code == 302
    r = send(f"/tickets/{tid}/edit", ticket_form(upload(b"same file twice\n", "a.txt"),
                                                      upload(b"same file twice\n", "b.txt"), title="Laptop"))
    assert r.status_code == 302, r.get_data(as_text=True)
    with app.app_context():
        files = attachments_of(tid)
        comments = {c.body: c for c in db.session.scalars(db.select(Comment))}
        assert [(a.filename, a.comment_id, a.content_type) for a in files] == [
            ("router.conf", comments["Here is the config"].id, "text/plain"),
            ("dump.txt", comments["Internal dump"].id, "text/plain"),
            ("a.txt", None, "text/plain"), ("b.txt", None, "text/plain")]
        assert files[1].is_internal and not files[0].is_internal
        assert count(Blob) == 3  # the same bytes twice are stored once
        on = [e.changes.get("on") for e in db.session.scalars(
            db.select(TicketEvent).where(TicketEvent.kind == "attached").order_by(TicketEvent.id))]
        assert on == [[None, "comment"], [None, "internal comment"], None, None]
    page = client.get(f"/tickets/{tid}").get_data(as_text=True)
    assert page.count("router.conf") >= 2 and "on an internal" in page
    text = client.get(f"/tickets/{tid}/attachments/{files[0].id}")
    assert text.headers["Content-Type"] == "text/plain; charset=utf-8" and text.data == b"key=value\n"


def nothing_stored() -> bool:
    return count(Attachment) == 0 and count(Blob) == 0 and count(BlobChunk) == 0


def test_limits_empty_and_over_size_files_are_form_errors_and_nothing_is_saved(app, client, auth, send,
                                                                              ticket_form):
    app.config.update(ATTACHMENT_MAX_MB=1, MAX_CONTENT_LENGTH=3 * 1048576)
    auth.login()
    big = upload(b"x" * (1048576 + 1), "just-over.bin")
    response = send("/tickets/new", ticket_form(upload(b"ok", "fine.txt"), big))
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "just-over.bin is 1.0 MiB; a file may be at most 1 MiB. Nothing was saved." in page
    assert 'id="attachments-error"' in page and 'value="VPN drops every hour"' in page  # the rest is kept
    response = send("/tickets/new", ticket_form(upload(b"", "empty.txt")))
    assert response.status_code == 400 and "empty.txt is empty (0 bytes)" in response.get_data(as_text=True)
    # A script is told with a status: 413 and a problem document.
    response = send("/tickets/new", ticket_form(upload(b"x" * (1048576 + 1), "big.bin")),
                    headers={"Accept": "application/json"})
    assert response.status_code == 413 and response.mimetype == "application/problem+json"
    assert "big.bin is 1.0 MiB" in response.json["detail"]
    # More than a whole request may carry: the form again, the reason next to its file field.
    files = [upload(os.urandom(1_000_000), f"part{i}.bin") for i in range(4)]
    response = send("/tickets/new", ticket_form(*files))
    page = response.get_data(as_text=True)
    assert response.status_code == 413 and "larger than the 3 MiB one request may carry" in page
    assert 'id="attachments-error"' in page and "<form" in page
    response = send("/tickets/new", ticket_form(*[upload(os.urandom(1_000_000), f"p{i}") for i in range(4)]),
                    headers={"Accept": "application/json"})
    assert response.status_code == 413 and response.mimetype == "application/problem+json"
    with app.app_context():
        assert count(Ticket) == 0 and nothing_stored()
        tid = factories.make_ticket("Existing").id
    response = send(f"/tickets/{tid}/comments", {"body": "see", "attachments": [
        upload(os.urandom(1_000_000), f"c{i}") for i in range(4)]})
    assert response.status_code == 413 and "larger than the 3 MiB" in response.get_data(as_text=True)
    response = send(f"/tickets/{tid}/edit", ticket_form(*[upload(os.urandom(1_000_000), f"e{i}")
                                                          for i in range(4)], title="Existing"))
    assert response.status_code == 413 and 'value="Existing"' in response.get_data(as_text=True)
    with app.app_context():
        assert count(Comment) == 0 and nothing_stored()


@pytest.mark.parametrize(("name", "shown", "disposition"), [
    ("../../etc/passwd", "passwd", 'attachment; filename="passwd"'),
    # A literal '%' is not left in the plain filename for a browser to decode.
    ("..%2f..%2fetc%2fpasswd", "..%2f..%2fetc%2fpasswd",
     "attachment; filename=\".._2f.._2fetc_2fpasswd\"; filename*=UTF-8''..%252f..%252fetc%252fpasswd"),
    ("/etc/shadow", "shadow", 'attachment; filename="shadow"'),
    ("nul\x00byte.txt", "nulbyte.txt", 'attachment; filename="nulbyte.txt"'),
    ("invoice\u202egnp.exe", "invoicegnp.exe", 'attachment; filename="invoicegnp.exe"'),
    ("bell\x07tab\tname.txt", "belltab name.txt", 'attachment; filename="belltab name.txt"'),
    ("zero\u200bwidth.txt", "zerowidth.txt", 'attachment; filename="zerowidth.txt"'),
    ("Übersicht März.pdf", "Übersicht März.pdf",
     "attachment; filename=\"Ubersicht Marz.pdf\"; filename*=UTF-8''%C3%9Cbersicht%20M%C3%A4rz.pdf"),
    ("..", "attachment", 'attachment; filename="attachment"'),
])
def test_hostile_names_are_stored_and_served_harmlessly(app, client, auth, send, ticket_form, name, shown,
                                                        disposition):
    auth.login()
    with app.app_context():
        tid = factories.make_ticket("Names").id
    response = send(f"/tickets/{tid}/comments", {"body": "file", "attachments": [upload(b"data\n", name)]})
    assert response.status_code == 302, response.get_data(as_text=True)
    with app.app_context():
        attachment = db.session.scalar(db.select(Attachment))
        assert attachment.filename == shown
    got = client.get(f"/tickets/{tid}/attachments/{attachment.id}")
    assert got.status_code == 200 and got.headers["Content-Disposition"] == disposition


def test_a_name_of_ten_thousand_characters_keeps_its_extension(app, client, auth, send):
    auth.login()
    with app.app_context():
        tid = factories.make_ticket("Long").id
    send(f"/tickets/{tid}/comments", {"body": "long", "attachments": [upload(b"x", "a" * 10_000 + ".log")]})
    with app.app_context():
        name = db.session.scalar(db.select(Attachment.filename))
    assert len(name) == 255 and name.endswith("a.log")


@pytest.mark.parametrize(("content", "name", "stored_type", "served", "disposition"), [
    (b"<html><script>alert(1)</script></html>", "cute.png", "text/plain", "text/plain; charset=utf-8",
     "attachment"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "logo.svg", "text/plain",
     "text/plain; charset=utf-8", "attachment"),
    (b"<?xml version='1.0'?><x/>", "data.xml", "text/plain", "text/plain; charset=utf-8", "attachment"),
    (b"MZ\x90\x00" + b"\x00" * 300, "holiday-photo.jpg", "application/x-msdownload", "application/x-msdownload",
     "attachment"),
    (b"\x7fELF" + b"\x02" * 300, "readme.txt", "application/x-executable", "application/x-executable",
     "attachment"),
    (PNG, "no-extension", "image/png", "image/png", "inline"),
])
def test_the_type_is_judged_by_content_and_only_safe_images_show_inline(app, client, auth, send, content, name,
                                                                       stored_type, served, disposition):
    auth.login()
    with app.app_context():
        tid = factories.make_ticket("Types").id
    send(f"/tickets/{tid}/comments", {"body": "file", "attachments": [upload(content, name)]})
    with app.app_context():
        attachment = db.session.scalar(db.select(Attachment))
        assert attachment.content_type == stored_type
    got = client.get(f"/tickets/{tid}/attachments/{attachment.id}")
    assert got.headers["Content-Type"] == served and got.headers["X-Content-Type-Options"] == "nosniff"
    assert got.headers["Content-Disposition"].split(";")[0] == disposition and got.data == content
    assert "sandbox" in got.headers["Content-Security-Policy"]


def test_a_multipart_body_cut_off_half_way_is_refused_and_saves_nothing(app, client, auth, ticket_form):
    auth.login()
    fields = MultiDict({"csrf_token": auth.csrf(), **ticket_form()})
    fields.add("attachments", upload(os.urandom(200_000), "cut.bin"))
    boundary, body = encode_multipart(fields)
    response = client.post("/tickets/new", data=body[:len(body) // 2],
                           content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 400
    with app.app_context():
        assert count(Ticket) == 0 and nothing_stored()


def test_a_range_across_a_chunk_boundary_and_a_blob_deleted_mid_download(app, client, auth, send):
    auth.login()
    with app.app_context():
        tid = factories.make_ticket("Ranges").id
    content = os.urandom(3 * 1048576 + 10)  # four chunks
    send(f"/tickets/{tid}/comments", {"body": "file", "attachments": [upload(content, "big.bin")]})
    with app.app_context():
        attachment = db.session.scalar(db.select(Attachment))
    url = f"/tickets/{tid}/attachments/{attachment.id}"
    part = client.get(url, headers={"Range": "bytes=1048570-2097160"})
    assert part.status_code == 206 and part.data == content[1048570:2097161]
    assert part.headers["Content-Range"] == f"bytes 1048570-2097160/{len(content)}"
    tail = client.get(url, headers={"Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.data == content[-5:]
    changed = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"another"'})
    assert changed.status_code == 200 and changed.data == content
    streamed = client.get(url, buffered=False)
    body = iter(streamed.response)
    first = next(body)
    with app.app_context():  # the file is removed and its blob cleaned up while the download runs
        db.session.execute(db.delete(Attachment))
        db.session.execute(db.delete(Blob))
        db.session.commit()
    rest = b"".join(body)
    streamed.close()
    assert first == content[:1048576] and rest == b""  # ended short, not padded or failed
