"""Downloading a ticket's files, and removing one (its uploader or an admin, after a confirmation)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from itsm.attachments import service, serving
from itsm.attachments.models import Attachment
from itsm.extensions import db
from itsm.web import ActionForm

# Named downloads live apart (/files/<id>/<name>), so a file called "delete" or "thumbnail" is only a name.
bp = Blueprint("attachments", __name__, url_prefix="/tickets/<int:ticket_id>")


@bp.before_request
@login_required
def require_login():
    """Files are the desk's: agents and admins only, like the tickets they are on."""


def _attachment(ticket_id: int, attachment_id: int) -> Attachment:
    attachment = db.session.get(Attachment, attachment_id)
    if attachment is None or attachment.ticket_id != ticket_id:
        abort(404, f"Ticket #{ticket_id} has no attachment {attachment_id}.")
    return attachment


@bp.get("/attachments/<int:attachment_id>")
@bp.get("/files/<int:attachment_id>/<path:name>")
def download(ticket_id: int, attachment_id: int, name: str | None = None):
    """The file (the name in the address is for the browser's "save as"); ``?download=1`` downloads even
    an image that would show inline."""
    return serving.response(_attachment(ticket_id, attachment_id), download=request.args.get("download") == "1")


@bp.get("/attachments/<int:attachment_id>/thumbnail")
def thumbnail(ticket_id: int, attachment_id: int):
    found = serving.thumbnail_response(_attachment(ticket_id, attachment_id))
    if found is None:
        abort(404, "This file has no thumbnail.")
    return found


@bp.route("/attachments/<int:attachment_id>/delete", methods=["GET", "POST"])
def delete(ticket_id: int, attachment_id: int):
    attachment = _attachment(ticket_id, attachment_id)
    if not service.may_delete(current_user, attachment):
        abort(403, "Only the person who attached a file, or an admin, can remove it.")
    form = ActionForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400, "The form was missing its security token. Reload the page and try again.")
        name = attachment.filename
        service.remove(attachment, current_user)
        db.session.commit()
        flash(f"Removed {name} from ticket #{ticket_id}.", "success")
        return redirect(url_for("tickets.detail", ticket_id=ticket_id) + "#attachments")
    return render_template("tickets/attachment_delete.html", attachment=attachment, form=form)
