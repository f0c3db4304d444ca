"""Session and remember-me cookie flags: HttpOnly and SameSite=Lax always, Secure in production only."""

from __future__ import annotations

import pytest

from itsm import create_app
from itsm.extensions import db
from tests import factories
from tests.conftest import CSRF_RE, base_config


@pytest.fixture
def database_url(sqlite_url):
    """Nothing here depends on the database engine (the fuzzing runs on both): SQLite only."""
    return sqlite_url


def cookies_set(response) -> dict[str, str]:
    """Set-Cookie headers by cookie name."""
    return {header.split("=", 1)[0]: header for header in response.headers.getlist("Set-Cookie")}


def flags(header: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}


def log_in(client, base: str, remember: bool):
    page = client.get(f"{base}/login").get_data(as_text=True)
    data = {"email": "admin@example.com", "password": factories.PASSWORD, "csrf_token": CSRF_RE.search(page)[1]}
    if remember:
        data["remember"] = "y"
    # Over HTTPS Flask-WTF also wants a same-site Referer, as a browser sends it.
    response = client.post(f"{base}/login", data=data, headers={"Referer": f"{base}/login"})
    assert response.status_code == 302, response.get_data(as_text=True)
    return cookies_set(response)


@pytest.fixture
def app_for(database_url, monkeypatch):
    """``app_for(env)``: an app built the way wsgi.py builds it for ``env`` (cookie settings follow ITSM_ENV)."""
    built = []

    def build(env: str):
        monkeypatch.setenv("ITSM_ENV", env)
        built.append(create_app(base_config(database_url, ITSM_ENV=env, TESTING=False,
                                            SECRET_KEY="a-production-secret-key")))
        return built[-1]

    yield build
    for app in built:
        with app.app_context():
            db.engine.dispose()


@pytest.mark.parametrize("remember", [False, True])
def test_testing_app_cookies_are_httponly_lax_and_not_secure(client, remember):
    cookies = log_in(client, "http://localhost", remember)
    assert {"httponly", "samesite"} <= flags(cookies["session"]) and "SameSite=Lax" in cookies["session"]
    assert "secure" not in flags(cookies["session"])
    if remember:
        assert {"httponly", "samesite"} <= flags(cookies["remember_token"])
        assert "SameSite=Lax" in cookies["remember_token"] and "secure" not in flags(cookies["remember_token"])
    else:
        assert "remember_token" not in cookies


@pytest.mark.parametrize(("env", "secure"), [("production", True), ("development", False)])
def test_cookies_follow_itsm_env(app, app_for, env, secure):
    built = app_for(env)
    assert built.config["ITSM_ENV"] == env
    base = "https://localhost" if secure else "http://localhost"
    cookies = log_in(built.test_client(), base, remember=True)
    for name in ("session", "remember_token"):
        assert {"httponly", "samesite"} <= flags(cookies[name]), cookies[name]
        assert "SameSite=Lax" in cookies[name]
        assert ("secure" in flags(cookies[name])) is secure, cookies[name]


def test_production_refuses_to_start_without_a_secret_key(database_url, monkeypatch):
    monkeypatch.setenv("ITSM_ENV", "production")
    config = base_config(database_url, ITSM_ENV="production", TESTING=False, SECRET_KEY=None)
    with pytest.raises(SystemExit, match="SECRET_KEY must be set"):
        create_app(config)
