"""Invitations and password resets: signed, expiring, single-use links that reveal no accounts."""

from __future__ import annotations

import re
import time

import pytest
import sqlalchemy as sa
from itsdangerous.timed import TimestampSigner

from itsm.extensions import db
from itsm.mail.models import EmailMessage
from itsm.mail.tasks import send_email
from itsm.users import links
from itsm.users.models import User
from itsm.users.service import find_by_email
from tests import factories
from tests.conftest import CSRF_RE

NEW_PASSWORD = "a-brand-new-pass"
LINK = re.compile(r"http://127\.0\.0\.1:5000(/(?:reset-password|invitation)/[A-Za-z0-9_.\-]+)")


@pytest.fixture
def app_config(mailserver):
    return {**mailserver.app_config(), "BASE_URL": "http://127.0.0.1:5000"}


def emails(app, kind: str) -> list[EmailMessage]:
    with app.app_context():
        return db.session.scalars(sa.select(EmailMessage).where(EmailMessage.kind == kind)
                                  .order_by(EmailMessage.id)).all()


def link_in(message: EmailMessage) -> str:
    found = LINK.search(message.body_text)
    assert found, message.body_text
    assert found.group(0) in message.body_html
    return found.group(1)


def forgot(auth, email: str) -> str:
    response = auth.post("/forgot-password", {"email": email}, follow_redirects=True)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def choose(auth, path: str, password: str = NEW_PASSWORD, confirm: str | None = None):
    return auth.post(path, {"password": password, "confirm": password if confirm is None else confirm})


def test_forgot_password_reveals_nothing_and_sends_one_link(app, client, auth, ids):
    known = forgot(auth, "agent@example.com")
    unknown = forgot(auth, "nobody@example.com")
    # The CSRF token is signed with the current second, so it is the one part allowed to differ.
    assert (CSRF_RE.sub("", known).replace("agent@example.com", "X")
            == CSRF_RE.sub("", unknown).replace("nobody@example.com", "X"))
    assert "If an account exists for that address" in known
    forgot(auth, "AGENT@example.com")  # a second click minutes later does not flood the inbox
    [message] = emails(app, "password_reset")
    assert message.to_address == "agent@example.com"
    assert "expires in 1 hour" in message.body_text


def test_a_deactivated_account_gets_no_link(app, client, auth, ids):
    with app.app_context():
        db.session.get(User, ids.agent).active = False
        db.session.commit()
    forgot(auth, "agent@example.com")
    assert emails(app, "password_reset") == []


def test_reset_link_works_once(app, client, auth, ids):
    forgot(auth, "agent@example.com")
    path = link_in(emails(app, "password_reset")[0])
    assert client.get(path).status_code == 200
    response = choose(auth, path)
    assert response.status_code == 302 and response.location == "/board"
    auth.logout()
    auth.login("agent@example.com", NEW_PASSWORD)
    auth.logout()
    again = choose(auth, path, "yet-another-password")
    assert again.status_code == 400 and "already been used" in again.get_data(as_text=True)
    with app.app_context():
        assert find_by_email("agent@example.com").check_password(NEW_PASSWORD)


@pytest.mark.parametrize(("password", "confirm", "message"), [
    ("short", None, "Use between 10 and 256 characters."),
    (NEW_PASSWORD, "something-else-entirely", "The two passwords differ."),
    ("x" * 257, None, "Use between 10 and 256 characters."),
])
def test_reset_form_keeps_the_password_on_bad_input(app, client, auth, ids, password, confirm, message):
    with app.app_context():
        path = links.url_for_token(links.make_token(db.session.get(User, ids.agent), "reset"), "reset")
    response = choose(auth, path.removeprefix("http://127.0.0.1:5000"), password, confirm)
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    with app.app_context():
        assert find_by_email("agent@example.com").check_password(factories.PASSWORD)


def test_tampered_expired_and_cross_purpose_links_are_refused(app, client, auth, ids, monkeypatch):
    with app.app_context():
        agent = db.session.get(User, ids.agent)
        good = links.make_token(agent, "reset")
        invite_token = links.make_token(agent, "invite")
        stamp = int(time.time()) - 61 * 60
        monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: stamp)
        old = links.make_token(agent, "reset")
        monkeypatch.undo()
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    for path, text in ((f"/reset-password/{tampered}", "not valid"), (f"/reset-password/{old}", "expired"),
                       (f"/reset-password/{invite_token}", "not valid"), ("/reset-password/%0d%0aX", "not valid")):
        response = choose(auth, path)
        assert response.status_code == 400 and text in response.get_data(as_text=True), path
    with app.app_context():
        assert find_by_email("agent@example.com").check_password(factories.PASSWORD)


def test_invitation_end_to_end_over_smtp(app, client, auth, ids, mailserver):
    mailserver.start()
    auth.login()
    response = auth.post("/admin/users", {"email": "New.Hire@Example.com", "name": "New Hire", "role": "agent"})
    assert response.status_code == 302
    with app.app_context():
        user = find_by_email("new.hire@example.com")
        assert user.invite_pending and not user.check_password("")
    page = client.get("/admin/users").get_data(as_text=True)
    assert "invitation sent" in page
    [message] = emails(app, "invite")
    assert "Ada Admin has invited you" in message.body_text and "expires in 3 days" in message.body_text
    with app.app_context():
        assert send_email.apply((message.id,))["sent"] is True
    [delivered] = mailserver.messages
    assert delivered["To"] == "new.hire@example.com"
    path = link_in(message)
    auth.logout()
    assert choose(auth, path).status_code == 302  # logged in as the new user
    assert "New Hire" in client.get("/board").get_data(as_text=True)
    with app.app_context():
        assert not find_by_email("new.hire@example.com").invite_pending
    auth.logout()
    assert choose(auth, path).status_code == 400  # single use


def test_resend_and_refusals(app, client, auth, ids):
    auth.login()
    auth.post("/admin/users", {"email": "later@example.com", "role": "agent"})
    with app.app_context():
        user_id = find_by_email("later@example.com").id
    auth.post(f"/admin/users/{user_id}/invite")
    assert len(emails(app, "invite")) == 2
    # An account that already chose a password gets no invitation; nor does an existing address.
    response = auth.post(f"/admin/users/{ids.agent}/invite", follow_redirects=True)
    assert "already set a password" in response.get_data(as_text=True)
    response = auth.post("/admin/users", {"email": "agent@example.com", "role": "agent"})
    assert response.status_code == 400 and "already exists" in response.get_data(as_text=True)
    assert len(emails(app, "invite")) == 2
