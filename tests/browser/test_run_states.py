"""Run now in the browser: the schedules page, its history and the automation page tell the same last run."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests import factories

pytestmark = pytest.mark.browser


def test_run_now_then_both_pages_agree(live_server, page, artifacts, database_url, runner, procs):
    assert runner.invoke(args=["schedules", "sync"]).exit_code == 0
    page.goto(live_server + "/login")
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Log in").click()

    page.goto(live_server + "/admin/schedules")
    row = page.locator("tr", has=page.get_by_text("automation-ping", exact=True))
    expect(row.locator(".last-run")).to_have_text("not run yet")
    page.goto(live_server + "/admin/automation")
    ping = page.locator("#schedules-health tr", has=page.get_by_role("link", name="automation-ping", exact=True))
    expect(ping.locator(".badge").first).to_have_text("not run yet")
    expect(ping.locator(".badge").first).not_to_have_class(re.compile("state-healthy"))

    page.goto(live_server + "/admin/schedules")
    row.get_by_role("button", name="Run now").click()
    expect(page.locator(".flash-success")).to_contain_text("automation-ping enqueued now")
    expect(row.locator(".last-run .badge")).to_have_text("queued")
    worker = procs.run("worker", "--burst")
    assert worker.returncode == 0, worker.stdout + worker.stderr

    page.reload()
    expect(row.locator(".last-run .badge")).to_have_text("succeeded")
    on_schedules = " ".join(row.locator(".last-run").inner_text().split())
    page.screenshot(path=str(artifacts / f"run-states-schedules-{database_url.split(':')[0]}.png"), full_page=True)

    page.goto(live_server + "/admin/automation")
    expect(ping.locator(".badge").first).to_have_text("healthy")
    assert " ".join(ping.locator(".last-run").inner_text().split()) == on_schedules
    page.locator("#schedules-health").screenshot(
        path=str(artifacts / f"run-states-automation-{database_url.split(':')[0]}.png"))

    page.goto(live_server + "/admin/schedules")
    row.get_by_role("link", name="History").click()
    words = r"\s+".join(map(re.escape, ["Last run:", *on_schedules.split()]))
    expect(page.locator("p.last-run")).to_have_text(re.compile(words))
    manual = page.locator("tr.source-manual")
    expect(manual).to_have_count(1)
    expect(manual.locator(".badge").first).to_have_text("manual")
    expect(manual).to_contain_text("succeeded")
