"""An admin reads one email of the outbox: its text body, and its HTML body as text, never rendered."""

from __future__ import annotations

import re

import pytest

from itsm.extensions import db
from itsm.mail.models import EmailMessage

HOSTILE_HTML = '<p onclick="steal()">Hi</p><script>alert(1)</script><img src="https://tracker.example/p.gif">'


@pytest.fixture
def message_id(app):
    with app.app_context():
        message = EmailMessage(kind="ticket_created", to_address="pat@example.com", subject="Ticket #1 created",
                               body_text="Hello Pat,\n\nYour ticket <b>#1</b> is open.\n", body_html=HOSTILE_HTML,
                               status="failed", attempts=2, last_error="550 mailbox unavailable")
        db.session.add(message)
        db.session.commit()
        return message.id


def test_an_admin_reads_the_text_and_the_html_as_text(client, auth, message_id):
    auth.login()
    listing = client.get("/admin/outbox").get_data(as_text=True)
    assert f'href="/admin/outbox/{message_id}">Ticket #1 created</a>' in listing
    response = client.get(f"/admin/outbox/{message_id}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    text = re.search(r'<pre class="card mail-body" id="text-body">(.*?)</pre>', page, re.S).group(1)
    assert text == "Hello Pat,\n\nYour ticket &lt;b&gt;#1&lt;/b&gt; is open.\n"
    html = re.search(r'<pre class="card mail-body" id="html-body">(.*?)</pre>', page, re.S).group(1)
    assert html == ("&lt;p onclick=&#34;steal()&#34;&gt;Hi&lt;/p&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
                    "&lt;img src=&#34;https://tracker.example/p.gif&#34;&gt;")
    assert "<script>alert" not in page and "<img src=" not in page and 'onclick="steal' not in page
    assert "pat@example.com" in page and "550 mailbox unavailable" in page
    assert f'action="/admin/outbox/{message_id}/retry"' in page  # a failed one can be retried from here


def test_a_text_only_email_says_it_has_no_html(app, client, auth):
    with app.app_context():
        message = EmailMessage(kind="test", to_address="x@example.com", subject="Plain", body_text="Just text")
        db.session.add(message)
        db.session.commit()
        message_id = message.id
    auth.login()
    page = client.get(f"/admin/outbox/{message_id}").get_data(as_text=True)
    assert "Just text" in page and "This email has no HTML part." in page and 'id="html-body"' not in page


def test_only_admins_open_a_message_and_an_unknown_one_is_404(client, auth, message_id):
    assert client.get(f"/admin/outbox/{message_id}").status_code == 302  # to the login page
    auth.login_agent()
    assert client.get(f"/admin/outbox/{message_id}").status_code == 403
    auth.logout()
    auth.login()
    assert client.get("/admin/outbox/999999").status_code == 404
    assert client.get("/admin/outbox/99999999999999999999").status_code == 404
