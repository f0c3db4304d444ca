"""Recurring templates on the desk: the live rule preview, pause and resume."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from itsm.extensions import db
from itsm.recurring import forms as recurrence_forms
from itsm.recurring import service
from itsm.templating import show_time
from itsm.tickets.forms import PreviewForm
from itsm.tickets.models import Ticket
from itsm.web import ActionForm

bp = Blueprint("recurring", __name__, url_prefix="/tickets")


@bp.before_request
@login_required
def require_login():
    """For signed-in agents and admins, like the rest of the desk."""


@bp.get("/recurrence-preview")
def preview():
    """The next five occurrences of the rule in the query string, as an HTML fragment the ticket
    form swaps in while the rule is edited (the form's Preview button does the same without JS)."""
    form = PreviewForm(request.args)
    form.validate()
    recurrence_forms.fill_defaults(form)
    recurrence = recurrence_forms.check(form)
    errors = [(form[name].label.text, error) for name in recurrence_forms.RECURRENCE_FIELDS
              for error in form[name].errors]
    times = recurrence.series.upcoming(recurrence.series.first()) if recurrence else []
    body = render_template("tickets/_preview.html", preview=times, preview_errors=errors,
                           tz=form.recurrence_time_zone.data, series=recurrence.series if recurrence else None)
    return body, 400 if errors else 200


def _template_or_404(ticket_id: int) -> Ticket:
    ticket = db.session.get(Ticket, ticket_id)
    if ticket is None or not ticket.is_recurring:
        abort(404, f"There is no recurring ticket #{ticket_id}.")
    if not ActionForm().validate_on_submit():
        abort(400, "The form was missing its security token. Reload the page and try again.")
    return ticket


@bp.post("/<int:ticket_id>/pause")
def pause(ticket_id: int):
    ticket = _template_or_404(ticket_id)
    if service.set_active(ticket, current_user, False):
        db.session.commit()
        flash(f"Recurring ticket #{ticket.id} paused: it opens no tickets until it is resumed.", "success")
    return redirect(url_for("tickets.detail", ticket_id=ticket.id))


@bp.post("/<int:ticket_id>/resume")
def resume(ticket_id: int):
    ticket = _template_or_404(ticket_id)
    if service.set_active(ticket, current_user, True):
        db.session.commit()
        rec = ticket.recurrence
        when = show_time(rec.next_occurrence, rec.recurrence_time_zone, label=True) if rec.next_occurrence \
            else "none (the series ended)"
        flash(f"Recurring ticket #{ticket.id} resumed; next occurrence {when}.", "success")
    return redirect(url_for("tickets.detail", ticket_id=ticket.id))
