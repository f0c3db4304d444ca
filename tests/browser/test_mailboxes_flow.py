"""Inbound mail set up in a real browser against a real IMAP server (Dovecot): a mailbox added through the form
(a bad port refused next to the field), tested, edited without ever seeing its password; mail fetched and found
in the log with its outcome, filtered, downloaded as .eml; a domain blocked and unblocked; the mailbox deleted
with its log kept; and long subjects and senders on a phone."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from itsm.extensions import db
from itsm.inbound import mailboxes
from itsm.inbound.models import InboundMessage, Mailbox
from tests import factories
from tests.browser.test_phone_layout import CULPRITS, DESKTOP, OVERFLOW, PHONE
from tests.integration.test_inbound_mail import mail

pytestmark = pytest.mark.browser

USER = "desk@example.com"


@pytest.fixture
def app_config():
    return {"MAIL_INBOUND_ALLOW_PLAIN": True}


def log_in(page, base: str) -> None:
    page.goto(base + "/login")
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Board")).to_be_visible()


def row(page, text: str):
    return page.locator("table.tickets tbody tr", has_text=text)


def fetch(runner) -> str:
    """``flask mail fetch``, as cron or an admin at a shell would run it."""
    result = runner.invoke(args=["mail", "fetch"])
    assert result.exit_code == 0, result.output
    return result.output


def test_add_test_edit_fetch_log_block_and_delete_a_mailbox(app, live_server, page, runner, imap_server, artifacts,
                                                             database_url):
    kind = database_url.split(":")[0].split("+")[0]
    server = f"{imap_server.host}:{imap_server.port}"
    log_in(page, live_server)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin").click()
    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Mailboxes").click()
    expect(page.get_by_role("heading", name="Mailboxes")).to_be_visible()
    expect(page.get_by_text("No mailbox yet")).to_be_visible()

    # -- 1. Added through the form: a bad port is refused next to the field and what was typed stays.
    page.get_by_role("link", name="Add mailbox").click()
    expect(page.get_by_role("heading", name="Add a mailbox")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("helpdesk")
    page.get_by_label("IMAP server", exact=True).fill(imap_server.host)
    page.get_by_label("Port", exact=True).fill("0")
    page.get_by_label("Security", exact=True).select_option(label="plain (no encryption)")
    page.get_by_label("User", exact=True).fill(USER)
    page.get_by_label("Password", exact=True).fill("secret")
    page.get_by_label("New tickets' category", exact=True).fill("Email")
    page.get_by_role("button", name="Add mailbox").click()
    port = page.get_by_label("Port", exact=True)
    expect(page.locator("#port-error")).to_have_text("Number must be between 1 and 65535.")
    expect(port).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".field.has-error")).to_have_count(1)  # only the port
    expect(port).to_have_value("0")
    expect(page.get_by_label("Name", exact=True)).to_have_value("helpdesk")
    expect(page.get_by_label("IMAP server", exact=True)).to_have_value(imap_server.host)
    expect(page.get_by_label("Security", exact=True)).to_have_value("plain")
    expect(page.get_by_label("User", exact=True)).to_have_value(USER)
    expect(page.get_by_label("New tickets' category", exact=True)).to_have_value("Email")
    # A password is never sent back to the browser, not even the one just typed: it is asked for again.
    expect(page.get_by_label("Password", exact=True)).to_have_value("")
    assert "secret" not in page.content()
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Mailbox)) == 0

    port.fill(str(imap_server.port))
    page.get_by_label("Password", exact=True).fill("secret")
    page.get_by_role("button", name="Add mailbox").click()
    expect(page.locator(".flash-success")).to_have_text("Mailbox helpdesk added. Test the connection to check it.")
    box_row = row(page, "helpdesk")
    expect(box_row).to_have_count(1)
    expect(box_row.locator("td").nth(1)).to_have_text(f"{USER} at {server} (plain), INBOX")
    expect(box_row).to_contain_text("enabled")
    expect(box_row).to_contain_text("never")  # not fetched yet
    box_row.get_by_role("button", name="Test connection").click()
    expect(page.locator(".flash-success")).to_have_text(f"helpdesk: logged in to {server}; INBOX holds 0 messages.")
    with app.app_context():
        box = db.session.scalar(sa.select(Mailbox))
        box_id, sealed = box.id, box.password_encrypted

    # Edited: the password field is empty; saved empty, the stored password is kept and still logs in.
    box_row.get_by_role("link", name="helpdesk").click()
    expect(page.get_by_role("heading", name="Edit mailbox helpdesk")).to_be_visible()
    expect(page).to_have_url(f"{live_server}/admin/mailboxes/{box_id}/edit")
    expect(page.get_by_label("Password", exact=True)).to_have_value("")
    expect(page.get_by_text("leave it empty to keep it")).to_be_visible()
    expect(page.get_by_label("Port", exact=True)).to_have_value(str(imap_server.port))
    assert "secret" not in page.content() and sealed not in page.content()
    page.get_by_label("New tickets' category", exact=True).fill("Mail")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".flash-success")).to_have_text("Mailbox helpdesk saved.")
    with app.app_context():
        box = db.session.get(Mailbox, box_id)
        assert (box.password_encrypted, box.category) == (sealed, "Mail")

    # -- 2. Two messages arrive: a request and an out-of-office answer. The test reads the live folder.
    imap_server.append(USER, mail("Printer on fire", "Smoke from tray 2.\n"))
    imap_server.append(USER, mail("Away until Monday", "I am out of the office.\n", sender="kim@example.com",
                                  Auto_Submitted="auto-replied"))
    row(page, "helpdesk").get_by_role("button", name="Test connection").click()
    expect(page.locator(".flash-success")).to_have_text(f"helpdesk: logged in to {server}; INBOX holds 2 messages.")
    assert fetch(runner).startswith("helpdesk: 2 fetched (1 ignored, 1 ticket)")
    with app.app_context():
        ticket_row, ignored_row = db.session.scalars(sa.select(InboundMessage).order_by(InboundMessage.uid)).all()
        ticket_id, ticket_row_id = ticket_row.ticket_id, ticket_row.id
        assert (ticket_row.outcome, ignored_row.outcome, ignored_row.ticket_id) == ("ticket", "ignored", None)
    [request_raw] = [raw for _, _, raw in imap_server.messages(USER) if b"Subject: Printer on fire" in raw]

    page.reload()
    box_row = row(page, "helpdesk")
    expect(box_row).to_contain_text("2 new")  # the last fetch
    box_row.locator("td.num").get_by_role("link", name="2").click()
    expect(page.get_by_role("heading", name="Messages of helpdesk")).to_be_visible()
    rows = page.locator("table.tickets tbody tr")
    expect(rows).to_have_count(2)
    request = row(page, "Printer on fire")
    expect(request.locator("td").nth(1)).to_have_text("pat@example.com")
    expect(request.locator("td").nth(3)).to_have_text(f"new ticket #{ticket_id}")
    expect(request.get_by_role("link", name=f"#{ticket_id}")).to_have_attribute("href", f"/tickets/{ticket_id}")
    away = row(page, "Away until Monday")
    expect(away.locator("td").nth(1)).to_have_text("kim@example.com")
    expect(away.locator("td").nth(3)).to_have_text("ignored")
    expect(away.locator("td").nth(4)).to_contain_text("auto-reply")
    expect(away.locator("td").nth(3).get_by_role("link")).to_have_count(0)  # no ticket to link to
    page.screenshot(path=str(artifacts / f"mailbox-log-{kind}.png"), full_page=True)

    page.get_by_label("Outcome").select_option("ignored")
    page.get_by_role("button", name="Filter").click()
    log_url = f"{live_server}/admin/mailboxes/{box_id}/log"
    expect(page).to_have_url(re.compile(re.escape(log_url + "?") + "(.*&)?outcome=ignored(&|$)"))
    expect(page.get_by_label("Outcome")).to_have_value("ignored")  # the filter stays chosen
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Away until Monday")
    expect(rows.first.get_by_role("link", name=".eml")).to_have_count(0)  # only mail that changed the desk is kept
    page.get_by_role("link", name="Reset").click()
    expect(page).to_have_url(log_url)
    expect(rows).to_have_count(2)

    page.get_by_label("Sender or subject").fill("printer")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Printer on fire")
    with page.expect_download() as waiting:
        rows.first.get_by_role("link", name=".eml").click()
    download = waiting.value
    assert download.suggested_filename == f"message-{ticket_row_id}.eml"
    with open(download.path(), "rb") as fh:
        assert fh.read() == request_raw  # byte for byte as the server holds it
    rows.first.get_by_role("link", name=f"#{ticket_id}").click()
    expect(page.get_by_role("heading", name="Printer on fire")).to_be_visible()
    expect(page).to_have_url(f"{live_server}/tickets/{ticket_id}")

    # -- 3. A domain blocked from the mailboxes page, listed, and unblocked.
    page.goto(live_server + "/admin/mailboxes")
    blocked = page.locator("#blocked + p + ul li")
    expect(blocked).to_have_count(0)
    page.get_by_label("Block an address or a domain").fill("@Spam.Example")
    page.get_by_role("button", name="Block", exact=True).click()
    expect(page.locator(".flash-success")).to_have_text("Mail from spam.example is ignored from now on.")
    expect(page).to_have_url(f"{live_server}/admin/mailboxes#blocked")
    expect(blocked).to_have_count(1)
    expect(blocked).to_contain_text("spam.example")
    blocked.get_by_role("button", name="Unblock").click()
    expect(page.locator(".flash-success")).to_have_text("spam.example is no longer blocked.")
    expect(blocked).to_have_count(0)

    # -- 4. Deleted after its confirmation page (Cancel first changes nothing); its log stays.
    row(page, "helpdesk").get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", name="Delete the mailbox helpdesk?")).to_be_visible()
    page.get_by_role("link", name="Cancel").click()
    expect(page).to_have_url(f"{live_server}/admin/mailboxes")
    expect(row(page, "helpdesk")).to_have_count(1)
    row(page, "helpdesk").get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Delete the mailbox").click()
    expect(page.locator(".flash-success")).to_have_text("Mailbox helpdesk deleted; its log stays.")
    expect(page.get_by_text("No mailbox yet")).to_be_visible()
    page.get_by_role("link", name="Log of every message").click()
    expect(page.get_by_role("heading", name="Every inbound message")).to_be_visible()
    expect(rows).to_have_count(2)
    expect(row(page, "Printer on fire").get_by_role("link", name=f"#{ticket_id}")).to_be_visible()
    with page.expect_download() as waiting:
        row(page, "Printer on fire").get_by_role("link", name=".eml").click()
    with open(waiting.value.path(), "rb") as fh:
        assert fh.read() == request_raw
    assert page.request.get(f"{live_server}/admin/mailboxes/{box_id}/log").status == 404  # the mailbox is gone
    with app.app_context():
        assert db.session.get(Mailbox, box_id) is None
        assert db.session.scalar(sa.select(sa.func.count()).select_from(InboundMessage).where(
            InboundMessage.mailbox_id.is_(None))) == 2


def test_phone_long_subjects_and_senders_fit(app, live_server, browser, runner, imap_server, artifacts,
                                             database_url):
    subject = ("Invoice-INV-2026-" + "0123456789" * 11)[:120]  # a file name or reference: nowhere to break
    sender = ("visiting.researcher.of.the.faculty.of.engineering.2026-27"
              + "@department-of-mechanical-and-aerospace-engineering.example.org")
    assert len(subject) == len(sender) == 120 and " " not in subject
    imap_server.append(USER, mail(subject, "See the attached reference.\n", sender=sender))
    imap_server.append(USER, mail("Re: " + subject, "Out of office.\n", sender=sender,
                                  Auto_Submitted="auto-replied"))
    with app.app_context():
        mailboxes.create(name="helpdesk-of-the-faculty-of-mechanical-engineering", host=imap_server.host,
                         port=imap_server.port, security="plain", username="desk@example.com", password="secret")
    assert "2 fetched" in fetch(runner)
    with app.app_context():
        assert db.session.scalars(sa.select(InboundMessage.sender)).all() == [sender, sender]

    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.set_default_timeout(10_000)
    kind = database_url.split(":")[0].split("+")[0]
    try:
        log_in(page, live_server)
        page.goto(live_server + "/admin/mailboxes")
        # The long sender blocked through the page's own form: the flash and the list quote it.
        page.get_by_label("Block an address or a domain").fill(sender)
        page.get_by_role("button", name="Block", exact=True).click()
        expect(page.locator(".flash-success")).to_contain_text(sender)
        expect(page.locator("#blocked + p + ul li", has_text=sender)).to_have_count(1)
        page.screenshot(path=str(artifacts / f"phone-mailboxes-{kind}.png"), full_page=True)
        assert page.evaluate(OVERFLOW) <= 0, f"mailboxes too wide: {page.evaluate(CULPRITS)}"

        page.get_by_role("link", name="Log of every message").click()
        expect(page.locator("table.tickets tbody tr")).to_have_count(2)
        expect(page.get_by_text(sender)).to_have_count(2)
        page.screenshot(path=str(artifacts / f"phone-mailbox-log-{kind}.png"), full_page=True)
        assert page.evaluate(OVERFLOW) <= 0, f"log too wide: {page.evaluate(CULPRITS)}"
        # At desktop width the long words break inside their cells: the log needs no sideways scrolling.
        page.set_viewport_size(DESKTOP)
        wrap = page.locator(".table-wrap")
        assert wrap.evaluate("el => el.scrollWidth <= el.clientWidth"), "the log needs scrolling at 1280 px"
        page.goto(live_server + "/admin/mailboxes")
        assert wrap.evaluate("el => el.scrollWidth <= el.clientWidth"), "the mailboxes need scrolling at 1280 px"
    finally:
        context.close()
