"""Deployment proof: the Procfile from a clean checkout, run by honcho as a platform would.

Release phase, then web (gunicorn) + worker + scheduler on a free port; /readyz must turn 200;
an admin creates a recurring ticket due now through the web form in a real browser, runs the
recurring-ticket schedule from /admin/schedules, and the occurrence appears; SIGTERM stops
every process cleanly."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import TEST_REDIS_URL
from tests.mailserver import free_port
from tests.processes import ROOT, wait_for

pytestmark = pytest.mark.browser
PASSWORD = "deploy-admin-pass"


def procfile(checkout: Path) -> dict[str, str]:
    entries = {}
    for line in (checkout / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if command:
            entries[name.strip()] = command.strip()
    return entries


def status_of(port: int, path: str) -> int:
    """The HTTP status of GET path on loopback, or 0 when nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()


def test_procfile_from_a_clean_checkout(tmp_path, redis, page):
    checkout = tmp_path / "itsm"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(checkout)], check=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "FLASK_", "ITSM_", "PYTEST"))}
    env.update({"PATH": f"{Path(sys.executable).parent}:{env['PATH']}", "REDIS_URL": TEST_REDIS_URL,
                "SECRET_KEY": "deploy-proof-secret", "WEB_CONCURRENCY": "1", "MAIL_SUPPRESS_SEND": "1",
                "TIME_ZONE": "UTC", "PYTHONUNBUFFERED": "1"})
    release = subprocess.run(["bash", "-c", procfile(checkout)["release"]], cwd=checkout, env=env,
                             capture_output=True, text=True, timeout=120)
    assert release.returncode == 0, release.stderr
    admin = subprocess.run(["flask", "users", "create-admin", "--email", "admin@example.com", "--password", PASSWORD],
                           cwd=checkout, env=env, capture_output=True, text=True, timeout=60)
    assert admin.returncode == 0, admin.stderr
    log = (tmp_path / "honcho.log").open("w")
    honcho = subprocess.Popen(["honcho", "start", "--port", str(port), "web", "worker", "scheduler"], cwd=checkout,
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: status_of(port, "/readyz") == 200, timeout=90, interval=0.5, message="/readyz 200")

        page.goto(base + "/login")
        page.get_by_label("Email").fill("admin@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        # A new install's board has no columns yet: the admin's first step.
        page.goto(base + "/admin/columns")
        page.get_by_label("Name").fill("To do")
        page.get_by_role("button", name="Add column").click()
        expect(page.locator(".flash-success")).to_be_visible()
        page.goto(base + "/tickets/new")
        page.get_by_label("Title").fill("Deployment check {date}")
        page.get_by_label("Repeat this ticket on a schedule").check()
        page.get_by_label("Unit").select_option("daily")
        page.get_by_label("Next occurrence").fill(datetime.now(UTC).strftime("%Y-%m-%dT%H:%M"))
        page.get_by_label("Time zone").fill("UTC")
        page.get_by_role("button", name="Create ticket").click()
        expect(page.locator(".flash-success")).to_contain_text("Recurring ticket")
        template_url = page.url

        page.goto(base + "/admin/schedules")
        page.locator("tr", has_text="process-recurring-tickets").get_by_role("button", name="Run now").click()
        expect(page.locator(".flash-success")).to_be_visible()

        def occurrence_shown():
            page.goto(template_url)
            return page.locator("#occurrences + .table-wrap table tbody tr").count() == 1

        wait_for(occurrence_shown, timeout=60, interval=1, message="the occurrence on the template page")
        expect(page.locator("#occurrences + .table-wrap table")).to_contain_text("Deployment check")
    finally:
        os.kill(honcho.pid, signal.SIGTERM)  # what a platform sends on shutdown
        try:
            code = honcho.wait(timeout=45)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
            raise
        log.close()
    output = (tmp_path / "honcho.log").read_text()
    assert code in (0, 128 + signal.SIGTERM), output  # honcho reports the signal it was stopped by
    assert status_of(port, "/healthz") == 0, "the web process is still serving"
    for name in ("web.1", "worker.1", "scheduler.1"):
        assert f"{name} stopped" in output, output
    # Each stopped its own way, not killed mid-work: gunicorn's master, the worker after its jobs, the scheduler.
    for line in ("Shutting down: Master", "SIGTERM: finishing current jobs", "stopped"):
        assert line in output, output
    assert "Traceback" not in output, output
    with pytest.raises(ProcessLookupError):
        os.killpg(honcho.pid, 0)  # nothing of the process group is left
