"""Passwords of 10 to 256 characters, wherever one is chosen: the admin's new-user form, the reset and
invitation links, and ``flask users create-admin``. Outside that range: a clear message, nothing changed."""

from __future__ import annotations

import pytest

from itsm.extensions import db
from itsm.users import links
from itsm.users.models import User
from tests import factories

SHORT = "x" * 9
LONG = "x" * 257
TOO = {"short": (SHORT, "10"), "long": (LONG, "256")}  # the password, and the limit the message must name


@pytest.fixture
def database_url(sqlite_url):
    """The rule lives in the forms and the service, not in the database engine: SQLite only."""
    return sqlite_url


def users(app) -> dict[str, str]:
    with app.app_context():
        return {u.email: u.password_hash for u in db.session.scalars(db.select(User))}


def error_text(response) -> str:
    """The field error messages on the page."""
    import re

    return " ".join(re.findall(r'<p class="error"[^>]*>([^<]*)</p>', response.get_data(as_text=True)))


@pytest.mark.parametrize("too", ["short", "long"])
def test_admin_new_user_form(app, auth, too):
    password, limit = TOO[too]
    auth.login()
    before = users(app)
    response = auth.post("/admin/users", {"email": "new.person@example.com", "name": "New", "role": "agent",
                                          "password": password})
    assert response.status_code == 400
    assert users(app) == before
    assert limit in error_text(response), error_text(response)


@pytest.mark.parametrize("length", [10, 256])
def test_admin_new_user_form_accepts_the_limits(app, auth, length):
    auth.login()
    response = auth.post("/admin/users", {"email": f"len{length}@example.com", "role": "agent",
                                          "password": "p" * length})
    assert response.status_code == 302
    assert f"len{length}@example.com" in users(app)


@pytest.fixture
def invited(app, ids):
    from itsm.users.account_mail import invite_user

    with app.app_context():
        user = invite_user(email="invited@example.com", name="", role="agent", actor=db.session.get(User, ids.admin))
        db.session.commit()
        return user.id


def link(app, user_id: int, purpose: str) -> str:
    with app.app_context():
        token = links.make_token(db.session.get(User, user_id), purpose)
    return f"/{'invitation' if purpose == 'invite' else 'reset-password'}/{token}"


@pytest.mark.parametrize("purpose", ["reset", "invite"])
@pytest.mark.parametrize("too", ["short", "long"])
def test_reset_and_invitation_links(app, client, auth, ids, invited, purpose, too):
    password, limit = TOO[too]
    user_id = invited if purpose == "invite" else ids.agent
    url = link(app, user_id, purpose)
    before = users(app)
    response = client.post(url, data={"password": password, "confirm": password, "csrf_token": auth.csrf()})
    assert response.status_code == 400
    assert limit in error_text(response), error_text(response)
    assert users(app) == before
    assert client.get("/board").status_code == 302  # not logged in
    assert client.get(url).status_code == 200  # the link still works: nothing was used up
    good = "g" * (10 if too == "short" else 256)
    assert client.post(url, data={"password": good, "confirm": good, "csrf_token": auth.csrf()}).status_code == 302
    assert users(app) != before


@pytest.mark.parametrize("too", ["short", "long"])
def test_create_admin_command(app, runner, too):
    password, limit = TOO[too]
    before = users(app)
    result = runner.invoke(args=["users", "create-admin", "--email", "boss@example.com", "--password", password])
    assert result.exit_code != 0
    assert f"Password must be at {'least' if too == 'short' else 'most'} {limit} characters." in result.output
    assert "Traceback" not in result.output
    assert users(app) == before


def test_create_admin_command_accepts_a_good_password(app, runner):
    result = runner.invoke(args=["users", "create-admin", "--email", "boss@example.com", "--password", "b" * 10])
    assert result.exit_code == 0, result.output
    assert "boss@example.com" in users(app)
    with app.app_context():
        assert factories.user("boss@example.com").check_password("b" * 10)
