"""The desk: ticket list, detail, create, edit, comment, move, archive."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user, login_required
from werkzeug.exceptions import RequestEntityTooLarge

from itsm.attachments import service as attachments
from itsm.board import cards as board_cards
from itsm.board.models import BoardColumn, first_column, ordered_columns
from itsm.dbtypes import utcnow
from itsm.errors import problem, wants_json
from itsm.extensions import db
from itsm.formutil import options
from itsm.recurring import forms as recurrence_forms
from itsm.recurring import service as recurring
from itsm.templating import show_time, url_with
from itsm.tickets import categories, history, service
from itsm.tickets.export import csv_lines
from itsm.tickets.forms import BULK_MAX, SORTS, BulkForm, CommentForm, FilterForm, MoveForm, TicketForm
from itsm.tickets.models import Comment, Ticket, TicketEvent
from itsm.tickets.queries import HEADER_SORTS, export_rows, filter_conditions, ticket_page
from itsm.web import ActionForm, Page, page_number, safe_next

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


def _filters() -> tuple[FilterForm, list | None]:
    """The list's filter form and, when it is valid, its WHERE clauses."""
    form = FilterForm(request.args)
    form.fill_choices()
    if not form.validate():
        return form, None
    data = form.data
    recurring_view = data["archived"] == "recurring"
    return form, filter_conditions(
        q=data["q"] or "", column="" if recurring_view else data["column"] or "", assignee=data["assignee"] or "",
        priority=data["priority"] or "", category=data["category"] or "", archived=data["archived"] == "1",
        me_id=current_user.id, recurring=recurring_view,
    )


def _render_list(form: FilterForm, conditions: list | None, bulk_form: BulkForm | None = None,
                 selection_error: str = "", selected: frozenset = frozenset()):
    if bulk_form is None:
        bulk_form = BulkForm(formdata=None)
        bulk_form.fill_choices()
    context = {"form": form, "action_form": ActionForm(), "bulk_form": bulk_form, "header_sorts": HEADER_SORTS,
               "selection_error": selection_error, "selected": selected, "SORTS": SORTS,
               "categories": categories.known()}
    if conditions is None:
        return render_template("tickets/list.html", page=None, **context), 400
    number = page_number()
    recurring_view = form.archived.data == "recurring"
    page = ticket_page(conditions, form.sort.data or "newest", number, current_app.config["TICKETS_PER_PAGE"],
                       recurring=recurring_view)
    if number > page.pages:
        abort(404, f"There is no page {number}; the last page is {page.pages}.")
    status = 400 if bulk_form.errors or selection_error else 200
    return render_template("tickets/list.html", page=page, recurring_view=recurring_view,
                           summary=recurring.summary, **context), status


@bp.get("")
def index():
    return _render_list(*_filters())


def _selected_tickets() -> tuple[list[Ticket], str, frozenset]:
    """The ticked tickets, or a message saying what is wrong with the selection."""
    raw = request.form.getlist("ticket_id")
    if not raw:
        return [], "Tick at least one ticket.", frozenset()
    if len(raw) > BULK_MAX:
        return [], f"Select at most {BULK_MAX} tickets at a time.", frozenset()
    if not all(v.isascii() and v.isdigit() and len(v) <= 9 for v in raw):
        return [], "The selection holds something that is not a ticket number. Reload the page.", frozenset()
    ids = frozenset(int(v) for v in raw)
    tickets = db.session.scalars(
        db.select(Ticket).where(Ticket.id.in_(ids), Ticket.is_recurring.is_(False)).order_by(Ticket.id)).all()
    missing = sorted(ids - {t.id for t in tickets})
    if missing:
        return [], "No such ticket: " + ", ".join(f"#{n}" for n in missing) + ".", ids
    return tickets, "", ids


@bp.post("")
def bulk():
    """Apply the bulk form to the ticked tickets, each change recorded as a single edit would be."""
    form, conditions = _filters()
    bulk_form = BulkForm()
    bulk_form.fill_choices()
    valid = bulk_form.validate_on_submit()
    tickets, selection_error, selected = _selected_tickets()
    if valid and not selection_error and not bulk_form.changes():
        bulk_form.form_errors.append("Choose an assignee, a column or a priority to change.")
    if not valid or selection_error or bulk_form.form_errors:
        return _render_list(form, conditions, bulk_form, selection_error, selected)
    changes = bulk_form.changes()
    changed = sum(bool(service.update_ticket(t, current_user, **changes)) for t in tickets)
    db.session.commit()
    unchanged = len(tickets) - changed
    flash(f"{changed} ticket{'' if changed == 1 else 's'} updated"
          + (f"; {unchanged} already had {'that value' if len(changes) == 1 else 'these values'}." if unchanged
             else "."), "success" if changed else "info")
    number = page_number()
    if number > 1:  # the change may have moved tickets out of the filter: stay on a page that still exists
        last = ticket_page(conditions, form.sort.data or "newest", 1, current_app.config["TICKETS_PER_PAGE"]).pages
        if number > last:
            return redirect(url_with(page=last if last > 1 else None))
    return redirect(request.full_path.rstrip("?"))


@bp.get("/export.csv")
def export():
    """The current filter's tickets as CSV, streamed: rows are read in batches as the download goes."""
    form, conditions = _filters()
    if conditions is None:
        return _render_list(form, conditions)
    rows = export_rows(conditions, form.sort.data or "newest", current_app.config["TICKETS_EXPORT_BATCH"])
    filename = f"tickets-{utcnow():%Y%m%d-%H%M}.csv"
    return Response(stream_with_context(csv_lines(rows)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


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


def _new_ticket_defaults(form: TicketForm) -> None:
    """What an empty new-ticket form starts with: the board's first column, the site's zone, a start time."""
    first = first_column()
    form.column_id.data = first.id if first else None
    form.recurrence_time_zone.data = recurrence_forms.default_time_zone()
    form.next_occurrence.data = recurrence_forms.suggested_start(utcnow(), form.recurrence_time_zone.data)


@bp.route("/new", methods=["GET", "POST"])
def new():
    form = TicketForm()
    form.fill_choices()
    if request.method == "GET":
        _new_ticket_defaults(form)
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
        attachments.attach(ticket, form.attachments.data, current_user)
        db.session.commit()
        rec = ticket.recurrence
        flash(f"Recurring ticket #{ticket.id} created; next occurrence "
              f"{show_time(rec.next_occurrence, rec.recurrence_time_zone, label=True)}."
              if form.recurrence else f"Ticket #{ticket.id} created.", "success")
        return redirect(url_for("tickets.detail", ticket_id=ticket.id))
    return _form_answer(form, None)


def _form_answer(form: TicketForm, ticket: Ticket | None):
    """The form again, with its errors next to the fields; a file over the limit is a 413 to a script."""
    if form.attachments.over_limit and wants_json():
        return problem(413, " ".join(form.attachments.errors))
    return _render_form(form, ticket), 400 if form.errors else 200


def _request_too_large(message: str):
    """The form again (empty: the body was not read), the reason next to its file field."""
    request.forget_body()
    endpoint = request.endpoint
    ticket_id = (request.view_args or {}).get("ticket_id")
    ticket = db.session.get(Ticket, ticket_id) if ticket_id else None
    if endpoint == "tickets.comment" and ticket is not None and not ticket.is_recurring:
        form = CommentForm(formdata=None)
        form.attachments.errors = [message]
        return _render_detail(ticket, form, status=413)
    form = TicketForm(formdata=None, obj=ticket)
    form.fill_choices(current_assignee_id=ticket.assignee_id if ticket else None)
    if ticket is not None and ticket.is_recurring:
        del form.column_id
        recurrence_forms.fill_from(form, ticket)
    elif ticket is None:
        _new_ticket_defaults(form)
    form.attachments.errors = [message]
    return _render_form(form, ticket), 413


@bp.errorhandler(RequestEntityTooLarge)
def too_large(err: RequestEntityTooLarge):
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    message = (f"The upload is larger than the {limit / 1048576:.0f} MiB one request may carry: attach fewer "
               "files at a time. Nothing was saved.")
    if wants_json() or request.endpoint not in ("tickets.new", "tickets.edit", "tickets.comment"):
        return problem(413, message) if wants_json() else (
            render_template("errors/error.html", code=413, title="Upload too large", message=message), 413)
    return _request_too_large(message)


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
                           action_form=ActionForm(), attachments=attachments.of_ticket(ticket.id))


def _render_detail(ticket: Ticket, comment_form: CommentForm, status: int = 200):
    move_form = MoveForm(column_id=ticket.column_id)
    move_form.column_id.choices = options((c.id, c.name) for c in ordered_columns())
    comments = db.session.scalars(
        db.select(Comment).where(Comment.ticket_id == ticket.id).order_by(Comment.created_at, Comment.id)).all()
    events = db.session.scalars(
        db.select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
        .order_by(TicketEvent.created_at.desc(), TicketEvent.id.desc())).all()
    files = attachments.of_ticket(ticket.id)
    by_comment: dict[int, list] = {}
    for attachment in files:
        if attachment.comment_id:
            by_comment.setdefault(attachment.comment_id, []).append(attachment)
    return render_template("tickets/detail.html", ticket=ticket, comments=comments, events=events,
                           comment_form=comment_form, move_form=move_form, action_form=ActionForm(),
                           attachments=files, by_comment=by_comment), status


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
        added = attachments.attach(ticket, form.attachments.data, current_user)
        db.session.commit()
        files = f"{len(added)} file{'' if len(added) == 1 else 's'} attached" if added else ""
        if changes:
            flash("Ticket updated" + (f"; {files}." if files else "."), "success")
        else:
            flash(f"{files.capitalize()}." if files else "Nothing changed.", "success" if files else "info")
        return redirect(url_for("tickets.detail", ticket_id=ticket.id))
    return _form_answer(form, ticket)


@bp.post("/<int:ticket_id>/comments")
def comment(ticket_id: int):
    ticket = get_ticket_or_404(ticket_id)
    form = CommentForm()
    if form.validate_on_submit():
        added = service.add_comment(ticket, current_user, form.body.data, is_public=form.is_public.data)
        files = attachments.attach(ticket, form.attachments.data, current_user, comment=added)
        db.session.commit()
        flash("Comment added" + (f" with {len(files)} file{'' if len(files) == 1 else 's'}." if files else "."),
              "success")
        return redirect(url_for("tickets.detail", ticket_id=ticket.id) + "#comments")
    if form.attachments.over_limit and wants_json():
        return problem(413, " ".join(form.attachments.errors))
    return _render_detail(ticket, form, status=400)


def _back(ticket: Ticket) -> str:
    return safe_next(request.form.get("next")) or url_for("tickets.detail", ticket_id=ticket.id)


def _card_action(ticket: Ticket, form, apply, done_message):
    """A change made from a card or the ticket page: checked against what the page saw, then applied.

    Forms carry ``seen``, the ticket's updated_at when the page was drawn; if the ticket changed since,
    nothing is written and the answer is a 409 (a page, or for the board's script a problem document
    with the card as it is now). JSON clients get the card after the change; forms get a redirect."""
    if ticket.is_recurring:
        abort(400, "A recurring template is not on the board; the tickets it opens are.")
    if not form.validate_on_submit():
        if "csrf_token" in form.errors:
            abort(400, "The form was missing its security token or it expired. Reload the page and try again.")
        abort(400, form.invalid_message)
    seen = request.form.get("seen")
    if seen is not None and board_cards.parse_version(seen) is None:
        abort(400, "The form's 'seen' value is not a time with a zone; reload the page and try again.")
    columns = ordered_columns()
    back = _back(ticket)
    if seen is not None and board_cards.parse_version(seen) != board_cards.version(ticket):
        message = board_cards.conflict_message(ticket)
        if wants_json():
            return problem(409, message, **board_cards.card_payload(ticket, columns, back))
        return render_template("errors/error.html", code=409, title="Changed meanwhile", message=message,
                               back=back), 409
    changed = apply()
    if changed:
        db.session.commit()
    message = done_message() if changed else "Nothing to change."
    if wants_json():
        return {"message": message, "changed": bool(changed), **board_cards.card_payload(ticket, columns, back)}
    if changed:
        flash(message, "success")
    return redirect(back)


@bp.post("/<int:ticket_id>/move")
def move(ticket_id: int):
    ticket = get_ticket_or_404(ticket_id)
    form = MoveForm()
    form.column_id.choices = options((c.id, c.name) for c in ordered_columns())
    return _card_action(ticket, form,
                        lambda: service.move_ticket(ticket, db.session.get(BoardColumn, form.column_id.data),
                                                    current_user),
                        lambda: f"Ticket #{ticket.id} moved to {ticket.column.name}.")


@bp.post("/<int:ticket_id>/assign-to-me")
def assign_to_me(ticket_id: int):
    ticket = get_ticket_or_404(ticket_id)
    return _card_action(ticket, ActionForm(),
                        lambda: service.update_ticket(ticket, current_user, assignee_id=current_user.id),
                        lambda: f"Ticket #{ticket.id} is assigned to you.")


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
