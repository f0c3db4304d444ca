"""Board column rules shared by the admin pages and the demo seed."""

from __future__ import annotations

from sqlalchemy import func, update

from itsm.board.models import BoardColumn, ordered_columns
from itsm.dbtypes import same_name, utcnow
from itsm.extensions import db
from itsm.tickets.models import Ticket


class ColumnError(ValueError):
    """A column change that breaks a board rule; the message is for people."""


def _name_taken(name: str, exclude_id: int | None = None) -> bool:
    stmt = db.select(BoardColumn.id).where(same_name(BoardColumn.name, name))
    if exclude_id is not None:
        stmt = stmt.where(BoardColumn.id != exclude_id)
    return db.session.scalar(stmt) is not None


def create_column(name: str, is_done_column: bool = False) -> BoardColumn:
    if _name_taken(name):
        raise ColumnError(f"A column named {name!r} already exists.")
    last = db.session.scalar(db.select(func.max(BoardColumn.position))) or 0
    column = BoardColumn(name=name, is_done_column=is_done_column, position=last + 1)
    db.session.add(column)
    db.session.flush()
    return column


def update_column(column: BoardColumn, name: str, is_done_column: bool) -> None:
    if _name_taken(name, exclude_id=column.id):
        raise ColumnError(f"A column named {name!r} already exists.")
    if column.is_done_column and not is_done_column and _done_count() <= 1:
        raise ColumnError("The board needs at least one done column.")
    if column.is_done_column != is_done_column:
        # Tickets already in the column become done (or not done) with it, in one statement.
        db.session.execute(
            update(Ticket).where(Ticket.column_id == column.id)
            .values(done_at=utcnow() if is_done_column else None)
            .execution_options(synchronize_session=False)
        )
    column.name = name
    column.is_done_column = is_done_column


def _done_count() -> int:
    return db.session.scalar(
        db.select(func.count()).select_from(BoardColumn).where(BoardColumn.is_done_column.is_(True)))


def delete_column(column: BoardColumn) -> None:
    in_use = db.session.scalar(db.select(func.count(Ticket.id)).where(Ticket.column_id == column.id))
    if in_use:
        raise ColumnError(f"{column.name!r} still holds {in_use} ticket(s), archived ones included; move them first.")
    if column.is_done_column and _done_count() <= 1:
        raise ColumnError("The board needs at least one done column.")
    db.session.delete(column)


def shift_column(column: BoardColumn, step: int) -> None:
    """Swap a column with its neighbour to the left (-1) or right (+1)."""
    columns = ordered_columns()
    index = next(i for i, c in enumerate(columns) if c.id == column.id)
    other = index + step
    if 0 <= other < len(columns):
        columns[index], columns[other] = columns[other], columns[index]
    for position, col in enumerate(columns, start=1):
        col.position = position
