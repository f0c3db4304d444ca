"""A new user's first run: ``make run`` from a clean checkout, with another port than the default."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.browser.test_deployment import status_of
from tests.conftest import TEST_REDIS_URL
from tests.mailserver import free_port
from tests.processes import ROOT, wait_for


def test_make_run_on_another_port_links_there_and_listens_on_loopback_only(tmp_path, redis):
    checkout = tmp_path / "itsm"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(checkout)], check=True)
    venv = Path(sys.prefix)
    port, sink = free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DATABASE_URL", "FLASK_", "ITSM_", "PYTEST", "MAIL_", "BASE_URL", "BACKUP_DIR"))}
    env.update({"REDIS_URL": TEST_REDIS_URL, "PYTHONUNBUFFERED": "1"})
    log_path = tmp_path / "make.log"
    # The checkout runs on this venv, taken as installed (-o: make does not reinstall it).
    with log_path.open("w") as log:
        make = subprocess.Popen(["make", "-o", f"{venv}/.runtime", "run", f"VENV={venv}", f"PORT={port}",
                                 f"MAIL_SINK_PORT={sink}"], cwd=checkout, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: status_of(port, "/healthz") == 200, timeout=90, interval=0.5, message="make run serving")
        output = log_path.read_text()
        assert f"itsm is starting at   http://127.0.0.1:{port}/" in output, output
        # gunicorn logs its bind address before it answers.
        assert f"Listening at: http://127.0.0.1:{port}" in output and "0.0.0.0" not in output, output  # noqa: S104
        with sqlite3.connect(checkout / "instance" / "itsm.db") as conn:
            bodies = [row[0] for row in conn.execute("SELECT body_text FROM email_messages")]
        assert bodies, "the demo seed writes emails"
        links = [line for body in bodies for line in body.splitlines() if "http://" in line]
        assert links and all(f"http://127.0.0.1:{port}/" in line for line in links), links
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        try:
            make.wait(timeout=45)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)
            raise
