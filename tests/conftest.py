"""Fixtures in the Flask tutorial's style: app, client, runner, auth.

Database tests run once on SQLite and once on a PostgreSQL database that this
session creates and drops. With REQUIRE_SERVICES=1 an unreachable PostgreSQL
fails the run instead of skipping.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from itsm import create_app
from itsm.extensions import db
from tests import factories

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
ROOT = Path(__file__).resolve().parents[1]


def worker_redis_url(base: str, worker: str) -> str:
    """The Redis database of one pytest-xdist worker: gw0 gets ``base``'s, gw1 the one below, ..."""
    offset = int(worker.removeprefix("gw") or 0)
    prefix, _, number = base.rpartition("/")
    if offset > int(number):
        raise pytest.UsageError(f"too many test workers for the Redis databases below {base}")
    return f"{prefix}/{int(number) - offset}"


# Redis DB 15 belongs to the tests (15, 14, ... with several xdist workers): they flush it, and nothing else.
TEST_REDIS_URL = worker_redis_url(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
                                  os.environ.get("PYTEST_XDIST_WORKER", ""))
# Backups go here outside a test (own_backup_dir gives each test its own), never into the checkout's instance/.
TEST_FILES = tempfile.mkdtemp(prefix="itsm-tests-")
atexit.register(shutil.rmtree, TEST_FILES, True)
os.environ["BACKUP_DIR"] = os.path.join(TEST_FILES, "backups")  # the app and every process the tests start
os.environ["ATTACHMENT_CACHE_DIR"] = os.path.join(TEST_FILES, "attachment-cache")  # likewise, per test session
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
# Nothing listens on port 1: connections are refused at once, as from a Redis that is down.
DEAD_REDIS = "redis://127.0.0.1:1/0"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@pytest.fixture(scope="session", autouse=True)
def leave_redis_empty():
    """At the end of the run, this process's own Redis database is emptied: no key of a test outlives it
    (a scheduled job has no expiry)."""
    yield
    from redis import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except RedisError:
        pass  # not reachable: nothing was left in it either
    finally:
        client.close()


def service_missing(reason: str):
    """Skip, or fail when the run promised real services."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def base_config(database_url: str, **extra) -> dict:
    config = {
        "ITSM_ENV": "testing",
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "TIME_ZONE": "UTC",
        "REDIS_URL": TEST_REDIS_URL,
        "JOBS_IMPORTS": ("tests.jobtasks",),
        # The test client reads attachments from the database; tests/integration/test_attachment_cache.py and
        # the processes the tests start (gunicorn) use the cache.
        "ATTACHMENT_CACHE_MB": 0,
    }
    config.update(extra)
    return config


def migrate_database(url: str) -> None:
    from flask_migrate import upgrade

    app = create_app(base_config(url))
    with app.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture(scope="session")
def postgresql_url():
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"itsm_test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as err:
        admin.dispose()
        service_missing(f"PostgreSQL at {PG_ADMIN_URL}: {err.orig}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        migrate_database(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'itsm.db'}"
    migrate_database(url)
    return url


@pytest.fixture(autouse=True)
def own_backup_dir(monkeypatch, tmp_path):
    """Each test's own backup directory (its app and the processes it starts): a backup made by one test,
    e.g. a scheduler crossing 03:00, is never seen by the next test of the same process."""
    monkeypatch.setenv("BACKUP_DIR", str(tmp_path / "backups"))


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request):
    return request.getfixturevalue(f"{request.param}_url")


def empty_all_tables() -> None:
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    if db.engine.dialect.name == "postgresql":
        db.session.execute(sa.text("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY CASCADE"))
        # A test that wrote rows past a constraint (tests/badrows.py) put it back NOT VALID; empty, it holds again.
        for table, name in db.session.execute(sa.text(
                "SELECT conrelid::regclass::text, conname FROM pg_constraint WHERE NOT convalidated")).all():
            db.session.execute(sa.text(f'ALTER TABLE {table} VALIDATE CONSTRAINT "{name}"'))
    else:
        for table in tables:
            db.session.execute(sa.text(f"DELETE FROM {table}"))
    db.session.execute(sa.text("INSERT INTO schedule_state (id, version) VALUES (1, 0)"))  # as the migration left it
    db.session.commit()


@pytest.fixture
def app_config():
    """Extra settings for one test: override this fixture or mutate the dict."""
    return {}


def forget_login_failures() -> None:
    """Failed logins of earlier tests must not lock this one out (the same database URL and client)."""
    from redis import Redis
    from redis.exceptions import RedisError

    from itsm.auth.throttle import PREFIX
    from itsm.maintenance import KEY as MAINTENANCE

    client = Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1)
    try:
        # ... nor an earlier test's maintenance mode (or its in-flight entries) answer this one's requests.
        keys = [*client.scan_iter(f"{PREFIX}:*", count=1000), *client.scan_iter(f"{MAINTENANCE}*", count=1000)]
        if keys:
            client.delete(*keys)
    except RedisError:
        pass  # no Redis: the limit fails open, nothing to forget
    finally:
        client.close()


@pytest.fixture
def app(database_url, app_config):
    forget_login_failures()
    app = create_app(base_config(database_url, **app_config))
    with app.app_context():
        empty_all_tables()
        columns = factories.make_board()
        admin = factories.make_user("admin@example.com", role="admin", name="Ada Admin")
        agent = factories.make_user("agent@example.com", role="agent", name="Alan Agent")
        app.extensions["test_ids"] = SimpleNamespace(
            columns={c.name: c.id for c in columns}, admin=admin.id, agent=agent.id)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def ids(app):
    """Ids of the rows every test starts with: columns by name, admin, agent."""
    return app.extensions["test_ids"]


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class AuthActions:
    def __init__(self, client):
        self._client = client
        self.token = None

    def csrf(self) -> str:
        """The session's CSRF token, read from a form like a browser would."""
        if self.token is None:
            page = self._client.get("/login", follow_redirects=True).get_data(as_text=True)
            self.token = CSRF_RE.search(page).group(1)
        return self.token

    def login(self, email: str = "admin@example.com", password: str = factories.PASSWORD):
        response = self._client.post("/login", data={"email": email, "password": password, "csrf_token": self.csrf()})
        assert response.status_code == 302, response.get_data(as_text=True)
        return response

    def login_agent(self):
        return self.login("agent@example.com")

    def post(self, url: str, data: dict | None = None, **kwargs):
        """POST a form with the CSRF token, like the page would."""
        return self._client.post(url, data={"csrf_token": self.csrf(), **(data or {})}, **kwargs)

    def logout(self):
        return self.post("/logout")


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.fixture(scope="session")
def redis_url():
    from redis import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except RedisError as err:
        service_missing(f"Redis at {TEST_REDIS_URL}: {err}")
    finally:
        client.close()
    return TEST_REDIS_URL


@pytest.fixture
def redis(redis_url):
    """The tests' own Redis database, empty at the start of each test."""
    from redis import Redis

    import tests.jobtasks  # noqa: F401  (registers the test tasks in this process)

    client = Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def procs(app, database_url, redis, tmp_path):
    """Real ``flask`` subprocesses (workers, scheduler) on this test's database and Redis."""
    from tests.processes import Processes

    processes = Processes(database_url, TEST_REDIS_URL, tmp_path)
    yield processes
    processes.stop_all()
    print(processes.logs())  # pytest shows it when the test failed


@pytest.fixture
def mailserver():
    """A real SMTP server on a free port, not started: call ``.start()`` (or leave it down)."""
    from tests.mailserver import MailServer

    server = MailServer()
    yield server
    server.close()


@pytest.fixture
def imap_server(tmp_path):
    """A real IMAP server (Dovecot, its own configuration and mail in temporary directories) on a free port,
    started, with the user desk@example.com (password "secret"); ``add_user`` for more. See tests/imapserver.py."""
    from tests.imapserver import ImapServer, dovecot_version, unsupported

    if reason := unsupported(dovecot_version()):
        service_missing(reason)
    server = ImapServer(tmp_path, users={"desk@example.com": "secret"})
    try:
        server.start()
        yield server
    finally:
        server.close()
        print(server.log())  # pytest shows it when the test failed
