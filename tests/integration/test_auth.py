"""Login, logout and the next parameter."""

from __future__ import annotations

import statistics
import time

import pytest

from tests import factories


def test_login_and_logout(client, auth):
    response = auth.login()
    assert response.location == "/board"
    assert "Ada Admin" in client.get("/board").get_data(as_text=True)
    auth.logout()
    assert client.get("/board").status_code == 302


@pytest.mark.parametrize(
    ("email", "password"),
    [("admin@example.com", "wrong-password"), ("nobody@example.com", factories.PASSWORD), ("", ""),
     ("x" * 300 + "@example.com", "x")],
)
def test_bad_credentials_show_one_message(client, auth, email, password):
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": auth.csrf()})
    assert response.status_code == 400
    assert client.get("/board").status_code == 302


def test_wrong_password_and_unknown_user_look_the_same(client, auth):
    wrong = client.post("/login", data={"email": "admin@example.com", "password": "nope-nope-nope",
                                        "csrf_token": auth.csrf()})
    unknown = client.post("/login", data={"email": "ghost@example.com", "password": "nope-nope-nope",
                                          "csrf_token": auth.csrf()})
    assert "Email or password is incorrect." in wrong.get_data(as_text=True)
    assert "Email or password is incorrect." in unknown.get_data(as_text=True)


def test_an_unknown_email_takes_as_long_as_a_wrong_password(client, auth):
    """A failed login for an address with no account still checks a password hash, so response times
    do not list the accounts. Without that check it answers in about 1/50 of the time."""
    def cpu_seconds(email):
        # CPU time of this thread (the test client runs the request here): other processes busy on
        # the machine do not count, wall-clock time would.
        started = time.thread_time()
        response = client.post("/login", data={"email": email, "password": "nope-nope-nope",
                                                "csrf_token": auth.csrf()})
        assert response.status_code == 400
        return time.thread_time() - started

    times = {"unknown": [], "known": []}
    for i in range(4):  # interleaved, and under the per-email limit of 5
        times["unknown"].append(cpu_seconds(f"ghost{i}@example.com"))
        times["known"].append(cpu_seconds("admin@example.com"))
    unknown, known = statistics.median(times["unknown"]), statistics.median(times["known"])
    assert unknown > known / 2, (unknown, known)


def test_inactive_user_cannot_log_in(app, client, auth, ids):
    from itsm.extensions import db
    from itsm.users.models import User

    with app.app_context():
        db.session.get(User, ids.agent).active = False
        db.session.commit()
    response = client.post("/login", data={"email": "agent@example.com", "password": factories.PASSWORD,
                                           "csrf_token": auth.csrf()})
    assert response.status_code == 400


def test_login_without_csrf_token_is_refused(client):
    response = client.post("/login", data={"email": "admin@example.com", "password": factories.PASSWORD})
    assert response.status_code == 400
    assert client.get("/board").status_code == 302


def test_email_is_case_insensitive(client, auth):
    response = client.post("/login", data={"email": "ADMIN@Example.com", "password": factories.PASSWORD,
                                           "csrf_token": auth.csrf()})
    assert response.status_code == 302


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [("/tickets?q=vpn", "/tickets?q=vpn"), ("https://evil.example/", "/board"), ("//evil.example", "/board"),
     ("/\\evil.example", "/board")],
)
def test_next_never_leaves_the_site(client, auth, next_url, expected):
    page = client.get("/login", query_string={"next": next_url}).get_data(as_text=True)
    assert 'name="next"' in page
    response = client.post("/login", data={"email": "admin@example.com", "password": factories.PASSWORD,
                                           "csrf_token": auth.csrf(), "next": next_url})
    assert response.location == expected


def test_session_cookie_flags(client, auth):
    response = auth.login()
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_error_pages_use_the_layout(client, auth):
    auth.login()
    page = client.get("/no/such/page")
    assert page.status_code == 404
    assert 'class="topbar"' in page.get_data(as_text=True) and "Not found" in page.get_data(as_text=True)


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_unexpected_errors_show_the_500_page_without_a_trace(app, client, auth):
    @app.get("/tickets/boom")
    def boom():
        raise RuntimeError("secret internals")

    auth.login()
    response = client.get("/tickets/boom")
    page = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Something went wrong" in page and 'class="topbar"' in page
    assert "secret internals" not in page and "Traceback" not in page
