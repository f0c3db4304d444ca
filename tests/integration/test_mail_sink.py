"""The development mail sink: a real `flask mail sink` process receives what the workers send, and the
outbox page shows it."""

from __future__ import annotations

import signal
import smtplib
import socket
from email.message import EmailMessage

import pytest

from itsm.extensions import db
from itsm.mail.outbox import queue_email
from itsm.mail.tasks import send_email
from tests.mailserver import SENDER, free_port
from tests.processes import wait_for


@pytest.fixture
def sink_port() -> int:
    """Chosen when the test starts, not at import: a port free at collection may be taken by then."""
    return free_port()


@pytest.fixture
def app_config(tmp_path, sink_port):
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": sink_port, "MAIL_DEFAULT_SENDER": SENDER,
            "MAIL_SINK_DIR": str(tmp_path / "sink")}


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_sink_receives_and_the_outbox_page_shows_it(app, client, auth, procs, tmp_path, sink_port):
    sink = procs.start("mail", "sink", "--port", str(sink_port), "--dir", str(tmp_path / "sink"))
    wait_for(lambda: listening(sink_port), timeout=20, message="the sink to listen")
    auth.login()
    page = client.get("/admin/outbox").get_data(as_text=True)
    assert "Delivered to the development mail sink" in page and "has received nothing yet" in page
    with app.app_context():
        message = queue_email("test", "pat@example.com", "Hello <from> the sink", "test", sender="Ada")
        db.session.commit()
        assert send_email.apply((message.id,))["sent"] is True
    wait_for(lambda: list((tmp_path / "sink").glob("*.eml")), timeout=10, message="the message file")
    page = client.get("/admin/outbox").get_data(as_text=True)
    assert "pat@example.com" in page and "Hello &lt;from&gt; the sink" in page
    assert "This is a test email" in page  # the text body, readable on the page
    procs.kill(sink, signal.SIGTERM)
    assert sink.returncode == 0 and not listening(sink_port)


def test_the_outbox_page_says_when_the_sink_dropped_older_messages(app, client, auth, procs, tmp_path, sink_port):
    folder = tmp_path / "sink"
    procs.start("mail", "sink", "--port", str(sink_port), "--dir", str(folder), "--keep", "3")
    wait_for(lambda: listening(sink_port), timeout=20, message="the sink to listen")
    auth.login()

    def send(n: int, prefix: str) -> None:
        with smtplib.SMTP("127.0.0.1", sink_port, timeout=10) as smtp:
            for i in range(n):
                message = EmailMessage()
                message["From"], message["To"], message["Subject"] = SENDER, "pat@example.com", f"{prefix} {i}"
                message.set_content("hello")
                smtp.send_message(message)

    send(3, "First")
    wait_for(lambda: len(list(folder.glob("*.eml"))) == 3, timeout=10, message="three messages kept")
    assert "dropped" not in client.get("/admin/outbox").get_data(as_text=True)  # nothing dropped yet
    send(2, "Second")
    wait_for(lambda: (folder / "sink-state.json").exists(), timeout=10, message="the sink to count what it dropped")
    assert len(list(folder.glob("*.eml"))) == 3
    page = client.get("/admin/outbox").get_data(as_text=True)
    assert "The sink keeps only the newest 3 messages: it has dropped\n  2 older ones." in page
    assert all(f"Second {i}" in page for i in (0, 1)) and "First 2" in page  # the newest three
    assert "First 0" not in page and "First 1" not in page


def test_sink_refuses_production_and_a_busy_port(procs, tmp_path):
    refused = procs.run("mail", "sink", "--port", str(free_port()), ITSM_ENV="production", SECRET_KEY="x" * 32)
    assert refused.returncode != 0 and "for development" in refused.stderr
    assert "Traceback" not in refused.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = procs.run("mail", "sink", "--port", str(busy.getsockname()[1]), "--dir", str(tmp_path / "s"))
    assert taken.returncode != 0 and "cannot listen" in taken.stderr and "Traceback" not in taken.stderr


def test_without_a_sink_the_outbox_page_has_no_sink_section(app, client, auth):
    app.config["MAIL_SINK_DIR"] = None
    auth.login()
    assert "development mail sink" not in client.get("/admin/outbox").get_data(as_text=True)
