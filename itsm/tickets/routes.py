"""The desk: ticket list, detail, create, edit, comment, move, archive."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from itsm.auth.routes import safe_next
from itsm.board.models import BoardColumn, first_column, ordered_columns
from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.formutil import options
from itsm.recurring import forms as recurrence_forms
from itsm.recurring import service as recurring
from itsm.tickets import categories, history, service
from itsm.tickets.forms import ActionForm, CommentForm, FilterForm, MoveForm, TicketForm
from itsm.tickets.models import Comment, Ticket, TicketEvent
from itsm.tickets.queries import Page, filter_conditions, page_number, ticket_page

bp = Blueprint("tickets", __name__, url_prefix="/tickets")


@bp.before_request
@login_required
def require_login():
    """Every desk page needs a signed-in agent or admin."""


@bp.app_template_global("describe_event")
def describe_event(event):
    return history.describe(event)


def get_ticket_or_404(ticket_id: int) -> Ticket:
    ticket = db.session.get(Ticket, ticket_id)
    if ticket is None:
        abort(404, f"There is no ticket #{ticket_id}.")
    return ticket


@bp.get("")
def index():
    form = FilterForm(request.args)
    form.fill_choices()
    number = page_number()
    if not form.validate():
        return render_template("tickets/list.html", form=form, page=None, action_form=ActionForm(),
                               categories=categories.known()), 400
    data = form.data
    recurring_view = data["archived"] == "recurring"
    conditions = filter_conditions(
        q=data["q"] or "", column="" if recurring_view else data["column"] or "", assignee=data["assignee"] or "",
        priority=data["priority"] or "", category=data["category"] or "", archived=data["archived"] == "1",
        me_id=current_user.id,
        recurring=recurring_view,
    )
    page = ticket_page(conditions, data["sort"] or "newest", number, current_app.config["TICKETS_PER_PAGE"],
                       recurring=recurring_view)
    if number > page.pages:
        abort(404, f"There is no page {number}; the last page is {page.pages}.")
    return render_template("tickets/list.html", form=form, page=page, action_form=ActionForm(),
                           recurring_view=recurring_view, summary=recurring.summary, categories=categories.known())


def _preview(form) -> list:
    """The next five times of the form's rule, for the no-JavaScript Preview button."""
    recurrence = getattr(form, "recurrence", None)
    if recurrence is None:
        return []
    return recurrence.series.upcoming(recurrence.series.first())


def _render_form(form: TicketForm, ticket: Ticket | None) -> str:
    return render_template("tickets/form.html", form=form, ticket=ticket, preview=_preview(form),
                           tz=form.recurrence_time_zone.data, time_zones=recurrence_forms.sorted_time_zones(),
                           categories=categories.known())


@bp.route("/new", methods=["GET", "POST"])
def new():
    form = TicketForm()
    form.fill_choices()
    if request.method == "GET":
        first = first_column()
        form.column_id.data = first.id if first else None
        form.recurrence_time_zone.data = recurrence_forms.default_time_zone()
        form.next_occurrence.data = recurrence_forms.suggested_start(utcnow(), form.recurrence_time_zone.data)
    valid = form.validate_on_submit()
    if valid and "preview" not in request.form:
        column = db.session.get(BoardColumn, form.column_id.data)
        ticket = service.create_ticket(
            actor=current_user, column=None if form.recurrence else column, title=form.title.data,
            description=form.description.data, priority=form.priority.data,
            assignee_id=form.assignee_id.data or None, requester_email=form.requester_email.data,
            category=form.category.data,
        )
        if form.recurrence:
            recurring.make_template(ticket, current_user, form.recurrence)
        db.session.commit()
        flash(f"Recurring ticket #{ticket.id} created; next occurrence "
              f"{ticket.recurrence.next_occurrence:%Y-%m-%d %H:%M} UTC."
              if form.recurrence else f"Ticket #{ticket.id} created.", "success")
        return redirect(url_for("tickets.detail", ticket_id=ticket.id))
    status = 400 if form.errors else 200
    return _render_form(form, None), status


@bp.get("/<int:ticket_id>")
def detail(ticket_id: int):
    ticket = get_ticket_or_404(ticket_id)
    if ticket.is_recurring:
        return _render_template_page(ticket)
    return _render_detail(ticket, CommentForm())


def _render_template_page(ticket: Ticket):
    """A template: its rule, what comes next, and the tickets it has opened."""
    number = page_number()
    per_page = current_app.config["TICKETS_PER_PAGE"]
    total = db.session.scalar(db.select(db.func.count(Ticket.id)).where(Ticket.template_id == ticket.id))
    occurrences = db.session.scalars(
        db.select(Ticket).where(Ticket.template_id == ticket.id)
        .order_by(Ticket.occurrence_at.desc(), Ticket.id.desc()).limit(per_page).offset((number - 1) * per_page)
    ).all()
    page = Page(items=occurrences, page=number, per_page=per_page, total=total)
    if number > page.pages:
        abort(404, f"There is no page {number}; the last page is {page.pages}.")
    events = db.session.scalars(
        db.select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
        .order_by(TicketEvent.created_at.desc(), TicketEvent.id.desc()).limit(100)).all()
    return render_template("tickets/template.html", ticket=ticket, page=page, events=events,
                           summary=recurring.summary(ticket), upcoming=recurring.upcoming(ticket),
                           action_form=ActionForm())


def _render_detail(ticket: Ticket, comment_form: CommentForm, status: int = 200):
    move_form = MoveForm(column_id=ticket.column_id)
    move_form.column_id.choices = options((c.id, c.name) for c in ordered_columns())
    comments = db.session.scalars(
        db.select(Comment).where(Comment.ticket_id == ticket.id).order_by(Comment.created_at, Comment.id)).all()
    events = db.session.scalars(
        db.select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
        .order_by(TicketEvent.created_at.desc(), TicketEvent.id.desc())).all()
    return render_template("tickets/detail.html", ticket=ticket, comments=comments, events=events,
                           comment_form=comment_form, move_form=move_form, action_form=ActionForm()), status


@bp.route("/<int:ticket_id>/edit", methods=["GET", "POST"])
def edit(ticket_id: int):
    ticket = get_ticket_or_404(ticket_id)
    form = TicketForm(obj=ticket)
    form.fill_choices(current_assignee_id=ticket.assignee_id)
    if ticket.is_recurring:
        del form.column_id  # a template's tickets always open in the board's first column
    if request.method == "GET":
        form.assignee_id.data = ticket.assignee_id or 0
        if ticket.is_recurring:
            recurrence_forms.fill_from(form, ticket)
    form.is_recurring.data = ticket.is_recurring  # an existing ticket keeps its kind
    valid = form.validate_on_submit()
    if valid and "preview" not in request.form:
        values = {"column_id": form.column_id.data} if not ticket.is_recurring else {}
        changes = service.update_ticket(
            ticket, current_user, title=form.title.data, description=form.description.data,
            priority=form.priority.data, assignee_id=form.assignee_id.data or None,
            requester_email=form.requester_email.data or None, category=form.category.data, **values,
        )
        if form.recurrence:
            changes.update(recurring.change_rule(ticket, current_user, form.recurrence))
        db.session.commit()
        flash("Ticket updated." if changes else "Nothing changed.", "success" if changes else "info")
        return redirect(url_for("tickets.detail", ticket_id=ticket.id))
    status = 400 if form.errors else 200
    return _render_form(form, ticket), status


@bp.post("/<int:ticket_id>/comments")
def comment(ticket_id: int):
    ticket = get_ticket_or_404(ticket_id)
    form = CommentForm()
    if form.validate_on_submit():
        service.add_comment(ticket, current_user, form.body.data, is_public=form.is_public.data)
        db.session.commit()
        flash("Comment added.", "success")
        return redirect(url_for("tickets.detail", ticket_id=ticket.id) + "#comments")
    return _render_detail(ticket, form, status=400)


@bp.post("/<int:ticket_id>/move")
def move(ticket_id: int):
    ticket = get_ticket_or_404(ticket_id)
    if ticket.is_recurring:
        abort(400, "A recurring template is not on the board; the tickets it opens are.")
    form = MoveForm()
    form.column_id.choices = options((c.id, c.name) for c in ordered_columns())
    if not form.validate_on_submit():
        abort(400, "Choose one of the board's columns to move the ticket to.")
    column = db.session.get(BoardColumn, form.column_id.data)
    if service.move_ticket(ticket, column, current_user):
        db.session.commit()
        flash(f"Ticket #{ticket.id} moved to {column.name}.", "success")
    return redirect(safe_next(request.form.get("next")) or url_for("tickets.detail", ticket_id=ticket.id))


@bp.post("/<int:ticket_id>/archive")
def archive(ticket_id: int):
    return _set_archived(ticket_id, True)


@bp.post("/<int:ticket_id>/unarchive")
def unarchive(ticket_id: int):
    return _set_archived(ticket_id, False)


def _set_archived(ticket_id: int, archived: bool):
    ticket = get_ticket_or_404(ticket_id)
    if not ActionForm().validate_on_submit():
        abort(400, "The form was missing its security token. Reload the page and try again.")
    if service.set_archived(ticket, current_user, archived):
        db.session.commit()
        flash(f"Ticket #{ticket.id} {'archived' if archived else 'restored from the archive'}.", "success")
    return redirect(safe_next(request.form.get("next")) or url_for("tickets.detail", ticket_id=ticket.id))
