"""/admin/mailboxes: inbound mailboxes, their log of every message, blocked senders."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import func, or_, select

from itsm.admin.guard import admin_blueprint
from itsm.attachments.models import Blob
from itsm.attachments.serving import serve_blob
from itsm.extensions import db
from itsm.inbound import imap, mailboxes, secret
from itsm.inbound.forms import BlockForm, MailboxForm
from itsm.inbound.models import OUTCOMES, BlockedSender, InboundMessage, Mailbox
from itsm.web import ActionForm, Page, page_number

bp = admin_blueprint("mailboxes", __name__, "/admin/mailboxes")
PER_PAGE = 50
FIELDS = ("name", "host", "port", "security", "username", "folder", "after_import", "move_to", "priority",
          "category", "on_closed_reply", "enabled")


def _box(mailbox_id: int) -> Mailbox:
    box = db.session.get(Mailbox, mailbox_id)
    if box is None:
        abort(404, f"There is no mailbox {mailbox_id}.")
    return box


@bp.get("")
def index():
    boxes = db.session.scalars(select(Mailbox).order_by(Mailbox.name)).all()
    counts = dict(db.session.execute(select(InboundMessage.mailbox_id, func.count()).group_by(
        InboundMessage.mailbox_id)).all())
    blocked = db.session.scalars(select(BlockedSender).order_by(BlockedSender.pattern)).all()
    return render_template("admin/mailboxes.html", boxes=boxes, counts=counts, blocked=blocked,
                           block_form=BlockForm(), action_form=ActionForm(),
                           allow_plain=current_app.config["MAIL_INBOUND_ALLOW_PLAIN"])


def _save(form: MailboxForm, box: Mailbox | None):
    data = {name: getattr(form, name).data for name in FIELDS}
    data["column_id"] = form.column_id.data or None
    data["assignee_id"] = form.assignee_id.data or None
    try:
        mailboxes.check(data["name"], data["host"], data["port"], data["security"], data["username"],
                        data["folder"], mailbox_id=box.id if box else None)
        if box is None and not form.password.data:
            raise mailboxes.MailboxError("a mailbox needs a password")
    except mailboxes.MailboxError as err:
        form.form_errors.append(str(err)[0].upper() + str(err)[1:] + ".")
        return None
    box = box or Mailbox(last_uid=0)
    for name, value in data.items():
        setattr(box, name, value)
    if form.password.data:
        box.password_encrypted = secret.seal(form.password.data)
    db.session.add(box)
    db.session.commit()
    return box


@bp.route("/new", methods=["GET", "POST"])
def new():
    form = MailboxForm()
    form.fill_choices()
    if form.validate_on_submit() and (box := _save(form, None)):
        flash(f"Mailbox {box.name} added. Test the connection to check it.", "success")
        return redirect(url_for("mailboxes.index"))
    return render_template("admin/mailbox_form.html", form=form, box=None), 400 if form.errors or form.form_errors \
        else 200


@bp.route("/<int:mailbox_id>/edit", methods=["GET", "POST"])
def edit(mailbox_id: int):
    box = _box(mailbox_id)
    form = MailboxForm(obj=box)
    form.fill_choices()
    if request.method == "GET":
        form.column_id.data, form.assignee_id.data = box.column_id or 0, box.assignee_id or 0
    if form.validate_on_submit() and _save(form, box):
        flash(f"Mailbox {box.name} saved.", "success")
        return redirect(url_for("mailboxes.index"))
    return render_template("admin/mailbox_form.html", form=form, box=box), 400 if form.errors or form.form_errors \
        else 200


def _checked() -> None:
    if not ActionForm().validate_on_submit():
        abort(400, "The form was missing its security token. Reload the page and try again.")


@bp.post("/<int:mailbox_id>/test")
def test(mailbox_id: int):
    _checked()
    box = _box(mailbox_id)
    try:
        flash(f"{box.name}: {imap.test_connection(box)}.", "success")
    except imap.FetchError as err:
        flash(f"{box.name}: {err}.", "error")
    return redirect(url_for("mailboxes.index"))


@bp.post("/<int:mailbox_id>/toggle")
def toggle(mailbox_id: int):
    _checked()
    box = _box(mailbox_id)
    box.enabled = not box.enabled
    db.session.commit()
    flash(f"Mailbox {box.name} {'enabled' if box.enabled else 'disabled'}.", "success")
    return redirect(url_for("mailboxes.index"))


@bp.route("/<int:mailbox_id>/delete", methods=["GET", "POST"])
def delete(mailbox_id: int):
    box = _box(mailbox_id)
    if request.method == "POST":
        _checked()
        name = box.name
        db.session.delete(box)  # its ledger rows stay, without their mailbox
        db.session.commit()
        flash(f"Mailbox {name} deleted; its log stays.", "success")
        return redirect(url_for("mailboxes.index"))
    return render_template("admin/mailbox_delete.html", box=box, form=ActionForm())


@bp.get("/log")
@bp.get("/<int:mailbox_id>/log")
def log(mailbox_id: int | None = None):
    box = _box(mailbox_id) if mailbox_id else None
    outcome, q = request.args.get("outcome", ""), (request.args.get("q") or "").strip()[:200]
    if outcome and outcome not in OUTCOMES:
        abort(400, f"Unknown outcome {outcome!r}.")
    conditions = []
    if box is not None:
        conditions.append(InboundMessage.mailbox_id == box.id)
    if outcome:
        conditions.append(InboundMessage.outcome == outcome)
    if q:
        like = f"%{q.lower()}%"
        conditions.append(or_(func.lower(InboundMessage.sender).like(like),
                              func.lower(InboundMessage.subject).like(like)))
    number = page_number()
    total = db.session.scalar(select(func.count(InboundMessage.id)).where(*conditions))
    rows = db.session.scalars(select(InboundMessage).where(*conditions)
                              .order_by(InboundMessage.received_at.desc(), InboundMessage.id.desc())
                              .limit(PER_PAGE).offset((number - 1) * PER_PAGE)).all()
    page = Page(items=rows, page=number, per_page=PER_PAGE, total=total)
    if number > page.pages:
        abort(404, f"There is no page {number}; the last page is {page.pages}.")
    return render_template("admin/mailbox_log.html", box=box, page=page, outcome=outcome, q=q, outcomes=OUTCOMES,
                           action_form=ActionForm())


@bp.post("/messages/<int:message_id>/reprocess")
def reprocess(message_id: int):
    _checked()
    row = db.session.get(InboundMessage, message_id)
    if row is None:
        abort(404, f"There is no inbound message {message_id}.")
    if row.outcome not in ("error", "failed") or row.uid is None:
        flash("Only a fetched message that failed can be processed again.", "error")
    else:
        row.outcome, row.attempts, row.reason = "error", 0, "to be processed again (an admin asked)"
        db.session.commit()
        flash("It is processed again with the mailbox's next fetch.", "success")
    return redirect(request.referrer or url_for("mailboxes.log"))


@bp.get("/messages/<int:message_id>/raw")
def raw(message_id: int):
    """The message as it arrived (.eml), for audit: always a download."""
    row = db.session.get(InboundMessage, message_id)
    if row is None or row.raw_sha256 is None:
        abort(404, "That message was not kept.")
    blob = db.session.get(Blob, row.raw_sha256)
    return serve_blob(blob.sha256, blob.size, "message/rfc822", f"message-{row.id}.eml", inline=False)


@bp.post("/blocked")
def block():
    form = BlockForm()
    if form.validate_on_submit():
        pattern = form.pattern.data.lower().removeprefix("@")
        if db.session.scalar(select(BlockedSender.id).where(BlockedSender.pattern == pattern)) is None:
            db.session.add(BlockedSender(pattern=pattern))
            db.session.commit()
        flash(f"Mail from {pattern} is ignored from now on.", "success")
    else:
        flash("Type an address (pat@example.com) or a domain (example.com) to block.", "error")
    return redirect(url_for("mailboxes.index") + "#blocked")


@bp.post("/blocked/<int:blocked_id>/delete")
def unblock(blocked_id: int):
    _checked()
    row = db.session.get(BlockedSender, blocked_id)
    if row is not None:
        db.session.delete(row)
        db.session.commit()
        flash(f"{row.pattern} is no longer blocked.", "success")
    return redirect(url_for("mailboxes.index") + "#blocked")
