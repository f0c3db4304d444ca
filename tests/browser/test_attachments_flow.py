"""Files on tickets in a real browser: attached on the new-ticket form and on an internal comment, shown as a
thumbnail that loads and downloaded byte for byte; refused in the browser before an upload when too large or
empty; removed after a confirmation; and a very long name on a phone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from itsm.attachments.models import Attachment
from itsm.extensions import db
from tests import factories
from tests.browser.test_phone_layout import CULPRITS, OVERFLOW, PHONE

pytestmark = pytest.mark.browser

# Exactly 1500 bytes of text: listed as "1.5 KiB · text/plain".
LOG = b"".join(f"2026-03-04 09:{n:02d}:00 vpn: tunnel {n} dropped, reconnecting\n".encode()
               for n in range(60))[:1500]
WIDTH, HEIGHT = 4, 3
PICTURE = factories.png(WIDTH, HEIGHT)


@pytest.fixture
def app_config():
    """A 1 MB limit per file, so the browser's own check can be met with a 2 MB file."""
    return {"ATTACHMENT_MAX_MB": 1, "MAX_CONTENT_LENGTH": 17 * 1048576}


def log_in(page, base: str, email: str = "agent@example.com") -> None:
    page.goto(base + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Board")).to_be_visible()


def file(name: str, content: bytes, mime: str = "application/octet-stream") -> dict:
    return {"name": name, "mimeType": mime, "buffer": content}


def item(page, name: str):
    """A file's entry in the ticket's Files list (not the copy under its comment)."""
    return page.locator("h2#attachments + ul.attachments > li.attachment", has=page.get_by_role(
        "link", name=name, exact=True))


def new_ticket(app, title: str) -> int:
    with app.app_context():
        return factories.make_ticket(title, requester_email="teacher@example.com").id


def test_files_on_a_new_ticket_and_on_an_internal_comment(live_server, page, artifacts, database_url):
    log_in(page, live_server)
    page.goto(live_server + "/tickets/new")
    expect(page.locator(".field.files .hint")).to_have_text("Up to 1 MiB per file.")  # the server's setting
    page.get_by_label("Title").fill("VPN drops every hour")
    page.get_by_label("Description").fill("Log and a screenshot attached.")
    page.get_by_label("Attach files").set_input_files([file("screen.png", PICTURE, "image/png"),
                                                       file("vpn.log", LOG, "text/plain")])
    page.get_by_role("button", name="Create ticket").click()
    expect(page.locator(".flash-success")).to_contain_text("created")
    expect(page.get_by_role("heading", name="VPN drops every hour")).to_be_visible()
    expect(page).to_have_url(re.compile(re.escape(live_server) + r"/tickets/\d+$"))
    ticket_id = int(page.url.rsplit("/", 1)[1])

    expect(page.locator("h2#attachments")).to_have_text("Files (2)")
    picture, log = item(page, "screen.png"), item(page, "vpn.log")
    expect(picture).to_contain_text(f"{len(PICTURE)} B · image/png")
    expect(log).to_contain_text("1.5 KiB · text/plain")  # typed by its content, sized in binary units
    expect(log.locator("img")).to_have_count(0)  # only safe images get a thumbnail
    thumb = picture.locator(".thumb img")
    expect(thumb).to_have_attribute("alt", "screen.png")
    # The thumbnail really loaded: the browser decoded the served bytes as a 4x3 picture.
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
    assert thumb.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [WIDTH, HEIGHT]

    with page.expect_download() as waiting:
        log.get_by_role("link", name="vpn.log").click()
    download = waiting.value
    assert download.suggested_filename == "vpn.log"
    with open(download.path(), "rb") as fh:
        assert fh.read() == LOG
    # The same link fetched with the page's session: the exact bytes, served as text that never runs.
    response = page.request.get(live_server + log.get_by_role("link", name="vpn.log").get_attribute("href"))
    assert response.status == 200
    assert response.body() == LOG
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-disposition"].startswith("attachment")
    shown = page.request.get(live_server + thumb.get_attribute("src"))  # a WebP made from it, not the file
    assert shown.status == 200 and shown.headers["content-type"] == "image/webp"
    original = page.request.get(live_server + picture.locator("a.thumb").get_attribute("href"))
    assert (original.body(), original.headers["content-type"]) == (PICTURE, "image/png")

    # An internal comment with a file: the file shows under the comment, which carries the badge.
    page.get_by_label("Comment").fill("Router log from the branch office.")
    page.locator("form[action$='/comments']").get_by_label("Attach files").set_input_files(
        file("router.txt", b"link down at 09:14\n", "text/plain"))
    page.get_by_label("Visible to the requester").uncheck()
    page.get_by_role("button", name="Add comment").click()
    expect(page.locator(".flash-success")).to_have_text("Comment added with 1 file.")
    comment = page.locator("article.comment", has_text="Router log from the branch office.")
    expect(comment).to_have_class("comment internal")
    expect(comment.locator("header .badge")).to_have_text("internal")
    expect(comment.locator("li.attachment")).to_have_count(1)
    expect(comment.locator("li.attachment")).to_contain_text("19 B · text/plain")
    expect(comment.get_by_role("link", name="router.txt")).to_be_visible()
    # The ticket's list has it too, saying which comment it came with.
    expect(page.locator("h2#attachments")).to_have_text("Files (3)")
    expect(item(page, "router.txt")).to_contain_text("on an internal comment")
    expect(page.locator("ol.history > li", has_text="attached a file").filter(has_text="router.txt")).to_contain_text(
        "internal comment")
    comment_id = comment.get_attribute("id").removeprefix("comment-")
    expect(item(page, "router.txt").get_by_role("link", name="comment")).to_have_attribute(
        "href", f"#comment-{comment_id}")
    assert page.url.startswith(f"{live_server}/tickets/{ticket_id}")
    kind = database_url.split(":")[0].split("+")[0]
    page.screenshot(path=str(artifacts / f"attachments-{kind}.png"), full_page=True)


def test_the_browser_refuses_a_file_too_large_or_empty_before_uploading(app, live_server, page, database_url):
    ticket_id = new_ticket(app, "Printer jams on tray 2")
    log_in(page, live_server)
    url = f"{live_server}/tickets/{ticket_id}"
    page.goto(url)
    posts = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    form = page.locator("form[action$='/comments']")
    field = form.get_by_label("Attach files")
    error = form.locator(".client-error")
    expect(error).to_be_hidden()

    page.get_by_label("Comment").fill("Photo of the jam.")
    field.set_input_files(file("jam.bin", b"\x01" * (2 * 1048576)))
    # Said on choosing, next to the field, before anything is sent.
    expect(error).to_be_visible()
    expect(error).to_have_text("jam.bin is 2.0 MiB; a file may be at most 1 MiB.")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(form.locator(".field.files")).to_have_class("field files has-error")
    form.get_by_role("button", name="Add comment").click()
    expect(field).to_be_focused()  # the submit was stopped and the person sent back to the field
    expect(page).to_have_url(url)
    expect(page.locator("article.comment")).to_have_count(0)
    assert posts == []  # not a byte of it went to the server

    field.set_input_files(file("empty.txt", b""))
    expect(error).to_have_text("empty.txt is empty (0 bytes): there is nothing to attach.")
    form.get_by_role("button", name="Add comment").click()
    expect(page).to_have_url(url)
    assert posts == []

    # A file within the limit clears the message and goes through.
    field.set_input_files(file("jam.txt", b"tray 2, sheet 14\n", "text/plain"))
    expect(error).to_be_hidden()
    expect(field).to_have_attribute("aria-invalid", "false")
    form.get_by_role("button", name="Add comment").click()
    expect(page.locator(".flash-success")).to_have_text("Comment added with 1 file.")
    expect(page.locator("article.comment")).to_have_count(1)
    assert len(posts) == 1 and posts[0].endswith(f"/tickets/{ticket_id}/comments")


def test_removing_a_file_asks_first_and_is_kept_in_the_history(app, live_server, page, database_url):
    ticket_id = new_ticket(app, "Monitor flickers")
    log_in(page, live_server)
    page.goto(f"{live_server}/tickets/{ticket_id}/edit")
    page.get_by_label("Attach files").set_input_files([file("cable.txt", b"HDMI 2.0\n", "text/plain"),
                                                       file("monitor.png", PICTURE, "image/png")])
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".flash-success")).to_have_text("2 files attached.")
    expect(page.locator("h2#attachments")).to_have_text("Files (2)")

    item(page, "cable.txt").get_by_role("link", name="Remove").click()
    expect(page.get_by_role("heading", name=f"Remove a file from ticket #{ticket_id}?")).to_be_visible()
    expect(page.locator(".card strong")).to_have_text("cable.txt")
    expect(page.locator(".card")).to_contain_text("9 B, attached by Alan Agent")
    page.get_by_role("link", name="Cancel").click()
    expect(page).to_have_url(f"{live_server}/tickets/{ticket_id}#attachments")
    expect(item(page, "cable.txt")).to_have_count(1)
    expect(page.locator("h2#attachments")).to_have_text("Files (2)")

    item(page, "cable.txt").get_by_role("link", name="Remove").click()
    page.get_by_role("button", name="Remove the file").click()
    expect(page.locator(".flash-success")).to_have_text(f"Removed cable.txt from ticket #{ticket_id}.")
    expect(item(page, "cable.txt")).to_have_count(0)
    expect(item(page, "monitor.png")).to_have_count(1)
    expect(page.locator("h2#attachments")).to_have_text("Files (1)")
    removed = page.locator("ol.history > li", has_text="removed a file")
    expect(removed).to_have_count(1)
    expect(removed).to_contain_text("Alan Agent removed a file")
    expect(removed.locator("del")).to_have_text("cable.txt")
    with app.app_context():
        assert db.session.scalars(db.select(Attachment.filename).where(
            Attachment.ticket_id == ticket_id)).all() == ["monitor.png"]


def test_phone_a_ticket_with_a_200_character_file_name_fits(app, live_server, browser, artifacts, database_url):
    ticket_id = new_ticket(app, "Scanner saves unreadable files")
    long_name = ("scan-" + "0123456789" * 20)[:196] + ".pdf"
    assert len(long_name) == 200 and " " not in long_name
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        log_in(page, live_server)
        url = f"{live_server}/tickets/{ticket_id}"
        page.goto(url)
        # Through the page's own forms, on the phone: a file with the long name on a comment, and a picture.
        page.get_by_label("Comment").fill("The scanner's output.")
        page.locator("form[action$='/comments']").get_by_label("Attach files").set_input_files(
            [file(long_name, b"%PDF-1.4 not really\n"), file("scanner.png", PICTURE, "image/png")])
        page.get_by_role("button", name="Add comment").click()
        expect(page.locator(".flash-success")).to_have_text("Comment added with 2 files.")
        expect(page.get_by_role("link", name=long_name, exact=True)).to_have_count(2)  # the list and the comment
        expect(page.locator("ol.history > li", has_text=long_name)).to_have_count(1)
        assert page.evaluate(OVERFLOW) <= 0, f"too wide: {page.evaluate(CULPRITS)}"
        kind = database_url.split(":")[0].split("+")[0]
        page.screenshot(path=str(artifacts / f"phone-attachments-{kind}.png"), full_page=True)

        item(page, long_name).get_by_role("link", name="Remove").click()
        expect(page.locator(".card strong")).to_have_text(long_name)
        assert page.evaluate(OVERFLOW) <= 0, f"confirmation too wide: {page.evaluate(CULPRITS)}"
        page.get_by_role("button", name="Remove the file").click()
        expect(page.locator(".flash-success")).to_contain_text(long_name)
        expect(page.locator("ol.history > li", has_text="removed a file")).to_contain_text(long_name)
        assert page.evaluate(OVERFLOW) <= 0, f"too wide after the removal: {page.evaluate(CULPRITS)}"
    finally:
        context.close()
