"""The board: columns side by side; cards move with plain form buttons."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import func
from sqlalchemy.orm import selectinload

from itsm.board.models import ordered_columns
from itsm.extensions import db
from itsm.formutil import options
from itsm.tickets.forms import MoveForm
from itsm.tickets.models import Ticket

bp = Blueprint("board", __name__)


@bp.before_request
@login_required
def require_login():
    """The board is for signed-in agents and admins."""


@bp.get("/")
def home():
    return redirect(url_for("board.board"))


@bp.get("/board")
def board():
    mine = request.args.get("mine") == "1"
    limit = current_app.config["BOARD_CARDS_PER_COLUMN"]
    columns = ordered_columns()
    base = [Ticket.is_archived.is_(False)]
    if mine:
        base.append(Ticket.assignee_id == current_user.id)
    if mine:  # served by ix_tickets_assignee_archived_created
        counts = dict(db.session.execute(
            db.select(Ticket.column_id, func.count(Ticket.id)).where(*base).group_by(Ticket.column_id)).all())
    else:  # one index-only count per column beats a GROUP BY over every open ticket
        counts = {column.id: db.session.scalar(
            db.select(func.count()).select_from(Ticket).where(Ticket.column_id == column.id, *base))
            for column in columns}
    # One small indexed query per column (columns are few) instead of sorting every open ticket.
    lanes = []
    for column in columns:
        cards = db.session.scalars(
            db.select(Ticket).where(Ticket.column_id == column.id, *base)
            .order_by(Ticket.updated_at.desc(), Ticket.id.desc()).limit(limit)
            .options(selectinload(Ticket.assignee))
        ).all()
        lanes.append((column, cards, counts.get(column.id, 0)))
    move_form = MoveForm()
    move_form.column_id.choices = options((c.id, c.name) for c in columns)
    return render_template("board/board.html", lanes=lanes, columns=columns, move_form=move_form,
                           mine=mine, limit=limit)
