"""Login sessions end on the server: a cookie saved before logout, a password change or a deactivation
opens nothing afterwards, and logging out is a POST with a CSRF token (a link from another site cannot
log anyone out)."""

from __future__ import annotations

import http.client
from datetime import timedelta
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from itsm.extensions import db
from itsm.users import links
from itsm.users.models import User
from tests import factories
from tests.conftest import CSRF_RE, AuthActions
from tests.reliability.conftest import WebServer

pytestmark = pytest.mark.usefixtures("redis")
NEW_PASSWORD = "a-brand-new-pass"


class HttpClient:
    """Plain HTTP over a socket with a cookie jar: what a script replaying stolen cookies would do."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None, cookies: dict | None = None,
                headers: dict | None = None) -> tuple[int, dict, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        jar = self.cookies if cookies is None else cookies
        sent = {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items()), **(headers or {})}
        body = None
        if form is not None:
            body = urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        page = response.read().decode()
        if cookies is None:
            for header in response.headers.get_all("Set-Cookie") or []:
                for name, morsel in SimpleCookie(header).items():
                    if morsel["expires"] and "1970" in morsel["expires"] or morsel["max-age"] == "0":
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = morsel.value
        conn.close()
        return response.status, dict(response.headers), page

    def csrf(self, path: str = "/login") -> str:
        return CSRF_RE.search(self.request("GET", path)[2]).group(1)

    def login(self, email: str = "admin@example.com", remember: bool = False) -> None:
        form = {"email": email, "password": factories.PASSWORD, "csrf_token": self.csrf()}
        if remember:
            form["remember"] = "y"
        status, headers, _ = self.request("POST", "/login", form)
        assert status == 302 and headers["Location"] == "/board", status

    def board(self, cookies: dict | None = None) -> tuple[int, str]:
        status, headers, _ = self.request("GET", "/board", cookies=cookies)
        return status, headers.get("Location", "")


@pytest.mark.parametrize("remember", [False, True], ids=["session", "remember-me"])
def test_a_cookie_saved_before_logout_gets_the_login_page(app, procs, remember):
    web = WebServer(procs)
    web.wait_ready()
    browser = HttpClient(web.port)
    browser.login(remember=remember)
    assert browser.board() == (200, "")
    if remember:
        assert "remember_token" in browser.cookies
    saved = dict(browser.cookies)
    status, headers, _ = browser.request("POST", "/logout", {"csrf_token": browser.csrf("/board")})
    assert status == 302 and headers["Location"] == "/login"
    assert browser.board()[0] == 302
    status, location = browser.board(cookies=saved)  # the cookies from before logout, replayed
    assert status == 302 and location.startswith("/login"), (status, location)
    if remember:  # the remember-me cookie alone does not bring the session back either
        status, location = browser.board(cookies={"remember_token": saved["remember_token"]})
        assert status == 302 and location.startswith("/login"), (status, location)


def test_logging_out_ends_only_that_session(app):
    desk, phone = app.test_client(), app.test_client()
    desk_auth, phone_auth = AuthActions(desk), AuthActions(phone)
    desk_auth.login()
    phone_auth.login()
    assert desk_auth.logout().location == "/login"
    assert desk.get("/board").status_code == 302
    assert phone.get("/board").status_code == 200


def test_a_get_to_logout_changes_nothing(app, client, auth, dump):
    """A link or an <img src=/logout> on another site sends a GET, with the cookies (SameSite=Lax
    allows top-level GETs): it shows a page with a Log out button and logs nobody out."""
    auth.login()
    before = dump()
    page = client.get("/logout", headers={"Referer": "https://evil.example/", "Sec-Fetch-Site": "cross-site"})
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'method="post" action="/logout"' in text and 'name="csrf_token"' in text and "Log out" in text
    assert client.get("/board").status_code == 200
    assert dump() == before


def test_a_logout_post_without_the_token_is_refused(app, client, auth):
    auth.login()
    response = client.post("/logout", headers={"Origin": "https://evil.example"})
    assert response.status_code == 400
    assert client.get("/board").status_code == 200


def test_anonymous_get_logout_goes_to_login(client):
    response = client.get("/logout")
    assert response.status_code == 302 and response.location == "/login"


def test_a_password_reset_ends_every_other_session(app, ids):
    laptop, phone, reset = (app.test_client() for _ in range(3))
    AuthActions(laptop).login_agent()
    AuthActions(phone).login_agent()
    with app.app_context():
        token = links.make_token(db.session.get(User, ids.agent), "reset")
    resetter = AuthActions(reset)
    response = resetter.post(f"/reset-password/{token}", {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 302 and response.location == "/board"
    assert reset.get("/board").status_code == 200  # the browser that reset it is logged in afresh
    assert laptop.get("/board").status_code == 302 and phone.get("/board").status_code == 302


def test_deactivating_a_user_ends_their_sessions_for_good(app, client, auth, ids):
    agent = app.test_client()
    AuthActions(agent).login_agent()
    auth.login()
    form = {f"u{ids.agent}-role": "agent"}  # "active" left out: unticked
    assert auth.post(f"/admin/users/{ids.agent}", form).status_code == 302
    assert agent.get("/board").status_code == 302
    form[f"u{ids.agent}-active"] = "y"
    assert auth.post(f"/admin/users/{ids.agent}", form).status_code == 302
    assert agent.get("/board").status_code == 302  # reactivated: the old session stays over


def test_each_login_is_a_server_side_session(app, client, auth, ids):
    from itsm.auth.sessions import UserSession

    response = client.post("/login", data={"email": "admin@example.com", "password": factories.PASSWORD,
                                           "csrf_token": auth.csrf()}, headers={"User-Agent": "Firefox on the desk"})
    assert response.status_code == 302
    other = app.test_client()
    response = other.post("/login", data={"email": "admin@example.com", "password": factories.PASSWORD,
                                          "csrf_token": AuthActions(other).csrf()},
                          headers={"User-Agent": "bot\x00\x1b[31m" + "x" * 400})
    assert response.status_code == 302  # a hostile User-Agent is cleaned, not a 500
    with app.app_context():
        rows = db.session.scalars(sa.select(UserSession).order_by(UserSession.created_at)).all()
        assert rows[1].user_agent == "bot[31m" + "x" * 248
        assert [row.user_id for row in rows] == [ids.admin, ids.admin]
        assert rows[0].user_agent == "Firefox on the desk"
        assert all(row.created_at <= row.last_seen_at and len(row.id) == 64 for row in rows)
    # The cookie holds a token, not the id of the user nor of the row (only a digest is stored).
    with app.test_request_context():
        from flask import current_app

        cookie = current_app.session_interface.get_signing_serializer(current_app).loads(
            client.get_cookie("session").value)
    assert cookie["_user_id"] not in {str(ids.admin), *(row.id for row in rows)}


def test_a_session_unused_for_too_long_ends_and_a_used_one_is_seen(app, client, auth):
    from itsm.auth.sessions import LAST_SEEN_RESOLUTION, UserSession
    from itsm.dbtypes import utcnow

    auth.login()
    with app.app_context():
        db.session.execute(sa.update(UserSession).values(last_seen_at=utcnow() - LAST_SEEN_RESOLUTION * 2))
        db.session.commit()
    assert client.get("/board").status_code == 200
    with app.app_context():
        assert utcnow() - db.session.scalar(sa.select(UserSession.last_seen_at)) < LAST_SEEN_RESOLUTION
        idle = timedelta(days=app.config["SESSION_IDLE_DAYS"], minutes=1)
        db.session.execute(sa.update(UserSession).values(last_seen_at=utcnow() - idle))
        db.session.commit()
    assert client.get("/board").status_code == 302


def test_the_user_and_the_session_come_in_one_query(app, client, auth):
    """The check costs no extra round trip: the loader reads the session and its user together."""
    auth.login()
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", count)
        try:
            assert client.get("/profile").status_code == 200
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", count)
    loads = [s for s in statements if "user_sessions" in s]
    assert len(loads) == 1 and "users" in loads[0], statements
