"""Every page at phone size (390x844) and at desktop size (1280x800): nothing wider than the window."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect
from werkzeug.datastructures import FileStorage

from itsm.attachments import service as attachments
from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.inbound import mailboxes
from itsm.inbound.models import BlockedSender, InboundMessage
from itsm.schedules.catalog import entries
from itsm.schedules.models import PeriodicTask
from itsm.schedules.sync import sync
from itsm.users.models import User
from jobs.models import JobRun
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("redis")]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
# How far the page reaches past the window, in CSS pixels (0 when nothing sticks out).
OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"
# For the failure message: the outermost elements reaching past the window's right edge.
CULPRITS = """() => [...document.body.querySelectorAll('*')]
  .filter(el => el.getBoundingClientRect().right > window.innerWidth + 0.5)
  .filter(el => !el.parentElement || el.parentElement.getBoundingClientRect().right <= window.innerWidth + 0.5)
  .slice(0, 5).map(el => el.tagName.toLowerCase() + (el.className ? '.' + el.className : ''))"""


@pytest.fixture
def pages(app, ids) -> list[str]:
    """Data that makes each page show its widest content; returns every page of the app, as an admin sees it."""
    with app.app_context():
        long_address = ("visiting.researcher.of.the.faculty.of.engineering.2026-27"
                        "@department-of-mechanical-and-aerospace-engineering.example.org")
        long_title = "Projector in the large lecture theatre flickers after the firmware update of last week"
        ticket = factories.make_ticket(long_title, priority=4, category="Audio-visual equipment",
                                       requester_email="a.very.long.requester.address@faculty.example.org",
                                       assignee_id=ids.agent)
        # Files: a thumbnail, and a name of 200 characters without a space (on the ticket and its removal page).
        admin = db.session.get(User, ids.admin)
        files = attachments.attach(ticket, [FileStorage(io.BytesIO(factories.png(4, 3)), filename="projector.png"),
                                            FileStorage(io.BytesIO(b"log\n"), filename="firmware" * 25)], admin)
        db.session.commit()
        attachment_id = files[1].id
        for n in range(3):
            factories.make_ticket(f"Laptop {n} does not charge", requester_email=f"user{n}@example.com")
        template = factories.make_template("Weekly patch check {week}", start=datetime.now(UTC) + timedelta(days=1),
                                           recurrence_interval="weekly")
        sync(entries())
        task_id = db.session.scalar(db.select(PeriodicTask.id).order_by(PeriodicTask.name))
        now = utcnow()
        run = JobRun(job_id="phone-layout-run-0123456789abcdef", attempt=1, task_name="itsm.backups.backup_database",
                     queue="default", status="failed", created_at=now, enqueued_at=now, started_at=now,
                     finished_at=now, duration_seconds=1.5, error_type="CalledProcessError",
                     error_message="pg_dump: error: connection to server failed: " + "x" * 200)
        db.session.add(run)
        # Inbound mail: a failing mailbox, a logged message and a blocked sender, each 120 characters without
        # a space where a real one may have none.
        box = mailboxes.create(name="helpdesk-of-the-faculty-of-mechanical-engineering",
                               host="imap.department-of-mechanical-and-aerospace-engineering.example.org", port=993,
                               security="tls", username=long_address, password="secret")
        box.last_fetch_at, box.last_fetch_seconds, box.failures_in_row = now, 30.0, 2
        box.last_error = "cannot log in to imap.example.org:993: " + "x" * 200
        db.session.add_all([
            InboundMessage(mailbox_id=box.id, message_id="<phone-layout@example.org>", uidvalidity=1, uid=1,
                           sender=long_address, subject=("Invoice-" + "0123456789" * 12)[:120], outcome="ticket",
                           reason="its subject names #4711, which this sender is not on: a new ticket instead",
                           ticket_id=ticket.id),
            BlockedSender(pattern=long_address)])
        db.session.commit()
        ticket_id, template_id, run_id, box_id = ticket.id, template.id, run.id, box.id
    return ["/board", "/tickets", "/tickets?archived=1", f"/tickets/{ticket_id}", f"/tickets/{ticket_id}/edit",
            f"/tickets/{ticket_id}/attachments/{attachment_id}/delete",
            "/tickets/new", "/tickets?archived=recurring", f"/tickets/{template_id}",
            "/admin/users", "/admin/columns", "/admin/holidays", "/admin/settings", "/admin/outbox",
            "/admin/mailboxes", "/admin/mailboxes/new", f"/admin/mailboxes/{box_id}/edit", "/admin/mailboxes/log",
            f"/admin/mailboxes/{box_id}/log", f"/admin/mailboxes/{box_id}/delete",
            "/admin/backups", "/admin/schedules", "/admin/schedules/new", f"/admin/schedules/{task_id}/edit",
            f"/admin/schedules/{task_id}/history", "/admin/automation", f"/admin/automation/runs/{run_id}",
            "/profile"]


def log_in(page, base: str) -> None:
    page.goto(base + "/login")
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Board")).to_be_visible()


def check_every_page(page, base: str, paths: list[str]) -> None:
    too_wide = {}
    for path in paths:
        response = page.goto(base + path)
        assert response.status < 400, f"{path}: HTTP {response.status}"
        overflow = page.evaluate(OVERFLOW)
        if overflow > 0:
            too_wide[path] = (overflow, page.evaluate(CULPRITS))
    assert too_wide == {}, f"pages wider than the window (px too wide): {too_wide}"


@pytest.fixture
def viewport_page(browser):
    contexts = []

    def open_at(size: dict):
        context = browser.new_context(viewport=size)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        return page

    yield open_at
    for context in contexts:
        context.close()


def test_phone_every_page_fits_and_the_menu_folds(live_server, viewport_page, pages, artifacts):
    page = viewport_page(PHONE)
    page.goto(live_server + "/login")
    assert page.evaluate(OVERFLOW) <= 0, "the login page is wider than the phone"
    log_in(page, live_server)

    # The top bar: brand and Menu; the sections and Log out fold away until Menu is opened (no script).
    menu = page.locator(".topbar").get_by_text("Menu", exact=True)
    log_out = page.get_by_role("button", name="Log out")
    expect(menu).to_be_visible()
    expect(log_out).to_be_hidden()
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    page.screenshot(path=str(artifacts / "phone-board.png"), full_page=True)
    menu.click()
    expect(log_out).to_be_visible()
    box = log_out.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Tickets").click()
    expect(page.get_by_role("heading", name="Tickets")).to_be_visible()
    expect(log_out).to_be_hidden()  # folded again on the next page
    # The wide list scrolls inside its own box; the page stays the phone's width.
    wrap = page.locator(".table-wrap").first
    assert wrap.evaluate("el => el.scrollWidth > el.clientWidth")
    page.screenshot(path=str(artifacts / "phone-list.png"), full_page=True)

    # Keyboard: Tab reaches the menu toggle and Space opens it.
    page.goto(live_server + "/board")
    page.locator("#menu-toggle").focus()
    page.keyboard.press("Space")
    expect(log_out).to_be_visible()

    check_every_page(page, live_server, pages)


def test_desktop_every_page_fits_with_the_full_top_bar(live_server, viewport_page, pages, artifacts):
    page = viewport_page(DESKTOP)
    page.goto(live_server + "/login")
    assert page.evaluate(OVERFLOW) <= 0
    log_in(page, live_server)
    expect(page.locator(".topbar").get_by_text("Menu", exact=True)).to_be_hidden()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    nav = page.get_by_role("navigation", name="Main")
    expect(nav).to_be_visible()
    # One line: the brand, the sections and the account share the bar's height.
    bar = page.locator(".topbar").bounding_box()
    assert bar["height"] < 60
    page.goto(live_server + "/tickets")
    wrap = page.locator(".table-wrap").first
    assert wrap.evaluate("el => el.scrollWidth <= el.clientWidth"), "the list needs no scrolling at 1280 px"
    page.screenshot(path=str(artifacts / "desktop-list.png"), full_page=True)
    check_every_page(page, live_server, pages)
