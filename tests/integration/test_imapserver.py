"""The IMAP test server (tests/imapserver.py): a real Dovecot does what the inbound mail tests rely on."""

from __future__ import annotations

import base64
import os
import socket

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, LoginError

from tests.imapserver import ImapServer
from tests.relay import TcpRelay

DESK = "desk@example.com"


def message(subject: str, body: str = "Hello", size: int = 0) -> bytes:
    """A raw message with CRLF line ends (IMAP's), padded with ``size`` random bytes as a base64 attachment."""
    head = (f"From: Requester <req@example.org>\r\nTo: {DESK}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{os.urandom(8).hex()}@example.org>\r\nMIME-Version: 1.0\r\n")
    if not size:
        return (head + f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()
    data = base64.encodebytes(os.urandom(size)).replace(b"\n", b"\r\n")
    return (head + 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
            "Content-Type: text/plain\r\n\r\n" + body + "\r\n--b\r\n"
            "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n").encode() + data + (
        b"--b--\r\n")


def test_appended_messages_are_listed_by_increasing_uid(imap_server):
    raws = [message(f"Printer {n}", f"Body {n}") for n in range(3)]
    uids = [imap_server.append(DESK, raw) for raw in raws]

    assert uids == sorted(uids) and len(set(uids)) == 3
    listed = imap_server.messages(DESK)
    assert [uid for uid, _, _ in listed] == uids
    assert [raw for _, _, raw in listed] == raws
    assert all(flags == () for _, flags, _ in listed)  # new mail, and listing it marks nothing read


def test_flags_are_set_and_read_back(imap_server):
    unread = imap_server.append(DESK, message("Unread"))
    read = imap_server.append(DESK, message("Read on a phone"), flags=["\\Seen"])
    with imap_server.client(DESK) as client:
        client.select_folder("INBOX")
        client.add_flags([unread], ["\\Seen", "\\Flagged"])
        client.remove_flags([read], ["\\Seen"])

    flags = {uid: set(f) for uid, f, _ in imap_server.messages(DESK)}
    assert flags == {unread: {"\\Seen", "\\Flagged"}, read: set()}


def test_a_message_moves_to_another_folder(imap_server):
    keep = imap_server.append(DESK, message("Stays"))
    done = imap_server.append(DESK, message("Imported"))
    imap_server.create_folder(DESK, "Imported")
    with imap_server.client(DESK) as client:
        assert b"MOVE" in client.capabilities()
        client.select_folder("INBOX")
        client.move([done], "Imported")
        assert any(name == "Imported" for _, _, name in client.list_folders())

    assert [(uid, subject_of(raw)) for uid, _, raw in imap_server.messages(DESK)] == [(keep, "Stays")]
    assert [subject_of(raw) for _, _, raw in imap_server.messages(DESK, "Imported")] == ["Imported"]


def subject_of(raw: bytes) -> str:
    return next(line[9:] for line in raw.decode().split("\r\n") if line.startswith("Subject: "))


def test_down_refuses_connections_and_comes_back_with_the_same_mail(imap_server):
    uids = [imap_server.append(DESK, message(f"Before {n}")) for n in range(2)]
    validity, port, pgid = imap_server.uidvalidity(DESK), imap_server.port, imap_server.proc.pid
    with imap_server.client(DESK) as client:  # a session open while it stops
        client.select_folder("INBOX")
        assert len(ImapServer.group_processes(pgid)) >= 4  # master, log, config, auth, login, imap...
        imap_server.stop()
        with pytest.raises((IMAPClientAbortError, OSError)):
            client.noop()

    assert ImapServer.group_processes(pgid) == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((imap_server.host, port), timeout=5).close()
    with pytest.raises(ConnectionRefusedError):
        IMAPClient(imap_server.host, port=port, ssl=False, timeout=5)

    imap_server.start()
    assert imap_server.port == port
    assert imap_server.uidvalidity(DESK) == validity
    assert [uid for uid, _, _ in imap_server.messages(DESK)] == uids
    assert imap_server.append(DESK, message("After")) == uids[-1] + 1


def test_users_see_only_their_own_mail(imap_server):
    imap_server.add_user("it@example.com", "other-secret")
    mine = imap_server.append(DESK, message("For the desk"))
    theirs = imap_server.append("it@example.com", message("For IT"))

    assert [(uid, subject_of(raw)) for uid, _, raw in imap_server.messages(DESK)] == [(mine, "For the desk")]
    assert [(uid, subject_of(raw)) for uid, _, raw in imap_server.messages("it@example.com")] == [(theirs, "For IT")]
    for user, password in ((DESK, "other-secret"), ("it@example.com", "secret"), ("nobody@example.com", "secret")):
        client = IMAPClient(imap_server.host, port=imap_server.port, ssl=False, timeout=10)
        with pytest.raises(LoginError):
            client.login(user, password)
        client.shutdown()


def test_a_ten_megabyte_message_comes_back_byte_for_byte(imap_server):
    raw = message("Scanned contract", size=10 * 1024 * 1024)
    uid = imap_server.append(DESK, raw)

    [(listed_uid, _, fetched)] = imap_server.messages(DESK)
    assert listed_uid == uid and len(fetched) == len(raw) and fetched == raw


def test_a_new_uidvalidity_renumbers_the_same_messages(imap_server):
    raws = [message("First"), message("Second")]
    for raw in raws:
        imap_server.append(DESK, raw, flags=["\\Seen"] if raw is raws[0] else [])
    imap_server.append(DESK, message("Gone"))
    with imap_server.client(DESK) as client:  # UIDs 1..3, then 3 expunged: the next UID would be 4
        client.select_folder("INBOX")
        client.delete_messages([3])
        client.expunge()
    old = imap_server.uidvalidity(DESK)

    new = imap_server.reset_uidvalidity(DESK)

    assert new != old and imap_server.uidvalidity(DESK) == new
    assert imap_server.messages(DESK) == [(1, ("\\Seen",), raws[0]), (2, (), raws[1])]
    assert imap_server.append(DESK, message("Third")) == 3


def test_two_servers_run_at_once(imap_server, tmp_path):
    other = ImapServer(tmp_path / "other", users={DESK: "elsewhere"})
    try:
        other.start()
        assert other.port != imap_server.port
        imap_server.append(DESK, message("Here"))
        other.append(DESK, message("There"))
        assert [subject_of(raw) for _, _, raw in imap_server.messages(DESK)] == ["Here"]
        assert [subject_of(raw) for _, _, raw in other.messages(DESK)] == ["There"]
        pgid = other.proc.pid
        other.stop()
        assert ImapServer.group_processes(pgid) == []
        assert [subject_of(raw) for _, _, raw in imap_server.messages(DESK)] == ["Here"]  # the first one goes on
    finally:
        other.close()


def test_cutting_the_relay_breaks_a_fetch_in_progress(imap_server):
    raw = message("Large attachment", size=2 * 1024 * 1024)
    uid = imap_server.append(DESK, raw)
    relay = TcpRelay(f"imap://{imap_server.host}:{imap_server.port}")
    relay.restore()
    try:
        client = IMAPClient(relay.host, port=relay.port, ssl=False, timeout=10)
        client.login(DESK, "secret")
        client.select_folder("INBOX")
        assert client.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"] == raw  # whole through the relay

        before = relay.from_server
        relay.cut_after(len(raw) // 2)  # halfway through the message's literal
        with pytest.raises((IMAPClientAbortError, OSError)):
            client.fetch([uid], ["BODY.PEEK[]"])
        assert relay.from_server - before == len(raw) // 2
        client.shutdown()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((relay.host, relay.port), timeout=5).close()

        relay.restore()  # the connection back: the message is still there, whole
        with IMAPClient(relay.host, port=relay.port, ssl=False, timeout=10) as again:
            again.login(DESK, "secret")
            again.select_folder("INBOX", readonly=True)
            assert again.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"] == raw
    finally:
        relay.cut()
