"""The board: columns side by side; cards move with plain form buttons, or by drag and drop (static/board.js)."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from itsm.board import cards as board_cards
from itsm.board.forms import BoardFilterForm
from itsm.board.models import ordered_columns
from itsm.dbtypes import utcnow
from itsm.tickets.models import PRIORITY_BY_NAME
from itsm.tickets.queries import match_conditions

bp = Blueprint("board", __name__)


@bp.before_request
@login_required
def require_login():
    """The board is for signed-in agents and admins."""


@bp.app_template_global("short_age")
def short_age(value, now=None) -> str:
    return board_cards.short_age(value, now)


@bp.app_template_global("board_version")
def board_version(ticket) -> str:
    return board_cards.version(ticket)


@bp.get("/")
def home():
    return redirect(url_for("board.board"))


@bp.get("/board")
def board():
    form = BoardFilterForm(request.args)
    form.fill_choices()
    if not form.assignee.data and request.args.get("mine") == "1":  # the old "My tickets" link
        form.assignee.data = "me"
    columns = ordered_columns()
    limit = current_app.config["BOARD_CARDS_PER_COLUMN"]
    context = {"form": form, "columns": columns, "limit": limit, "order": board_cards.ORDER_TEXT,
               "now": utcnow(), "here": request.full_path.rstrip("?")}
    if not form.validate():
        return render_template("board/board.html", lanes=None, filters={}, **context), 400
    values = form.values()
    conditions = match_conditions(me_id=current_user.id, **values)
    counts = board_cards.open_counts(columns, conditions)
    priority = PRIORITY_BY_NAME[values["priority"]] if "priority" in values else None
    lanes = [(column, board_cards.column_cards(column, conditions, limit, priority), counts.get(column.id, 0))
             for column in columns]
    board_cards.load_assignees([t for _, shown, _ in lanes for t in shown])
    return render_template("board/board.html", lanes=lanes, filters=values, **context)
