"""The login rate limit: failures counted per email address and per client address in Redis."""

from __future__ import annotations

import logging

import pytest

from itsm import create_app
from itsm.config import ConfigError
from itsm.extensions import db
from tests import factories
from tests.conftest import CSRF_RE, DEAD_REDIS, base_config

pytestmark = pytest.mark.usefixtures("redis_url")  # the counters live in Redis; the app fixture clears them
LOCKED = "Too many failed login attempts"


@pytest.fixture
def database_url(sqlite_url):
    """Nothing here depends on the database engine (the fuzzing runs on both): SQLite only."""
    return sqlite_url


def attempt(client, auth, email: str, password: str, address: str = "127.0.0.1", **headers):
    return client.post("/login", data={"email": email, "password": password, "csrf_token": auth.csrf()},
                       environ_base={"REMOTE_ADDR": address}, headers=headers)


def fail(client, auth, email: str, times: int, address: str = "127.0.0.1", **headers) -> None:
    for _ in range(times):
        response = attempt(client, auth, email, "wrong-password-123", address, **headers)
        assert response.status_code == 400, response.status_code
        assert "Email or password is incorrect." in response.get_data(as_text=True)


def test_after_five_failures_even_the_right_password_gets_429(app, client, auth):
    assert app.config["LOGIN_MAX_FAILURES"] == 5 and app.config["LOGIN_LOCKOUT_MINUTES"] == 15
    fail(client, auth, "admin@example.com", 5)
    response = attempt(client, auth, "admin@example.com", factories.PASSWORD)
    page = response.get_data(as_text=True)
    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= 15 * 60
    assert LOCKED in page and "Try again in 15 minutes" in page
    # The form is shown again, with the message next to it; no trace, no error page.
    assert 'name="email"' in page and 'name="password"' in page and 'name="csrf_token"' in page
    assert 'value="admin@example.com"' in page and "Traceback" not in page
    assert client.get("/board").status_code == 302  # not logged in


def test_the_lockout_looks_the_same_for_unknown_addresses(client, auth):
    fail(client, auth, "admin@example.com", 5)
    fail(client, auth, "ghost@example.com", 5)
    known = attempt(client, auth, "admin@example.com", "anything-at-all")
    unknown = attempt(client, auth, "ghost@example.com", "anything-at-all")
    assert known.status_code == unknown.status_code == 429
    def page(response) -> str:  # without the CSRF token, signed with the second it was made in
        return CSRF_RE.sub("", response.get_data(as_text=True))

    assert page(known).replace("admin@", "ghost@") == page(unknown)


def test_the_email_is_normalized_before_counting(client, auth):
    fail(client, auth, "admin@example.com", 3)
    fail(client, auth, "  ADMIN@Example.COM ", 2)
    assert attempt(client, auth, "Admin@example.com", factories.PASSWORD).status_code == 429


def test_one_locked_account_does_not_lock_another(app, client, auth):
    fail(client, auth, "admin@example.com", 5)
    assert attempt(client, auth, "admin@example.com", factories.PASSWORD).status_code == 429
    response = attempt(client, auth, "agent@example.com", factories.PASSWORD)
    assert response.status_code == 302 and client.get("/board").status_code == 200


def test_a_successful_login_resets_the_count(client, auth):
    fail(client, auth, "admin@example.com", 4)
    assert attempt(client, auth, "admin@example.com", factories.PASSWORD).status_code == 302
    auth.logout()
    fail(client, auth, "admin@example.com", 4)  # without the reset the fifth of these would be refused
    assert attempt(client, auth, "admin@example.com", factories.PASSWORD).status_code == 302


def test_the_lockout_ends_with_its_window(app, client, auth, redis):
    from itsm.auth import throttle

    fail(client, auth, "admin@example.com", 5)
    with app.test_request_context():
        keys = list(redis.scan_iter(match=throttle.namespace() + ":*"))
    assert len(keys) == 2  # the email address and the client address
    assert all(0 < redis.ttl(key) <= 15 * 60 for key in keys)
    assert attempt(client, auth, "admin@example.com", factories.PASSWORD).status_code == 429
    for key in keys:  # what Redis does when the 15 minutes are over
        redis.delete(key)
    assert attempt(client, auth, "admin@example.com", factories.PASSWORD).status_code == 302


def test_one_client_address_is_limited_across_accounts(client, auth):
    """Password spraying: one wrong guess for each of 20 addresses from one client."""
    for n in range(20):
        fail(client, auth, f"user{n}@example.com", 1, address="203.0.113.7")
    assert attempt(client, auth, "agent@example.com", factories.PASSWORD, address="203.0.113.7").status_code == 429
    assert attempt(client, auth, "agent@example.com", factories.PASSWORD, address="198.51.100.9").status_code == 302


def test_x_forwarded_for_does_not_get_around_the_limit(app, client, auth):
    """Without a proxy fix configured, the header is the client's to forge: the peer address counts."""
    assert not any("ProxyFix" in type(m).__name__ for m in (app.wsgi_app,))
    for n in range(20):
        fail(client, auth, f"user{n}@example.com", 1, **{"X-Forwarded-For": f"192.0.2.{n}"})
    response = attempt(client, auth, "agent@example.com", factories.PASSWORD, **{"X-Forwarded-For": "192.0.2.200"})
    assert response.status_code == 429


@pytest.mark.parametrize("app_config", [{"PROXY_HOPS": 1}])
def test_behind_a_proxy_each_client_has_its_own_count(client, auth):
    """With PROXY_HOPS=1 every request comes from the proxy (one peer address); the address the proxy
    appends to X-Forwarded-For is the client's."""
    proxy = "10.0.0.1"
    for n in range(20):
        fail(client, auth, f"user{n}@example.com", 1, address=proxy, **{"X-Forwarded-For": f"192.0.2.{n}"})
    other = attempt(client, auth, "agent@example.com", factories.PASSWORD, address=proxy,
                    **{"X-Forwarded-For": "198.51.100.9"})
    assert other.status_code == 302


@pytest.mark.parametrize("app_config", [{"PROXY_HOPS": 1}])
def test_behind_a_proxy_a_forged_first_hop_does_not_get_around_the_limit(client, auth):
    """A client may send its own X-Forwarded-For; the proxy appends the real address, the one counted."""
    for n in range(20):
        fail(client, auth, f"user{n}@example.com", 1, address="10.0.0.1",
             **{"X-Forwarded-For": f"192.0.2.{n}, 203.0.113.7"})
    response = attempt(client, auth, "agent@example.com", factories.PASSWORD, address="10.0.0.1",
                       **{"X-Forwarded-For": "192.0.2.250, 203.0.113.7"})
    assert response.status_code == 429


def test_a_negative_proxy_hop_count_is_refused(database_url):
    with pytest.raises(ConfigError, match="PROXY_HOPS must be 0 or more"):
        create_app(base_config(database_url, PROXY_HOPS=-1))


@pytest.mark.parametrize("app_config", [{"LOGIN_MAX_FAILURES": 2, "LOGIN_LOCKOUT_MINUTES": 1}])
def test_the_limits_come_from_the_config(client, auth):
    fail(client, auth, "admin@example.com", 2)
    response = attempt(client, auth, "admin@example.com", factories.PASSWORD)
    assert response.status_code == 429 and "Try again in 1 minute," in response.get_data(as_text=True)
    assert int(response.headers["Retry-After"]) <= 60
    for n in range(8 - 2):  # the client address allows four times as many
        fail(client, auth, f"user{n}@example.com", 1)
    assert attempt(client, auth, "agent@example.com", factories.PASSWORD).status_code == 429


def test_malformed_attempts_are_not_counted(client, auth):
    for _ in range(10):
        response = client.post("/login", data={"email": "admin@example.com", "password": "",
                                               "csrf_token": auth.csrf()})
        assert response.status_code == 400
    assert attempt(client, auth, "admin@example.com", factories.PASSWORD).status_code == 302


@pytest.fixture
def redis_down_app(app, database_url):
    down = create_app(base_config(database_url, REDIS_URL=DEAD_REDIS))
    yield down
    with down.app_context():
        db.engine.dispose()


def test_with_redis_down_login_still_works_and_says_so_in_the_log(redis_down_app, caplog):
    from tests.conftest import AuthActions

    client = redis_down_app.test_client()
    auth = AuthActions(client)
    with caplog.at_level(logging.WARNING, logger="itsm.auth.throttle"):
        fail(client, auth, "admin@example.com", 8)  # nothing counted, nothing locked
        response = attempt(client, auth, "admin@example.com", factories.PASSWORD)
    assert response.status_code == 302 and client.get("/board").status_code == 200
    warnings = [r for r in caplog.records if r.name == "itsm.auth.throttle"]
    assert len(warnings) == 9  # one per login: a request does not wait for a dead Redis twice
    assert all(r.levelno == logging.WARNING for r in warnings)
    assert "Redis" in warnings[0].getMessage() and "unreachable" in warnings[0].getMessage()
