"""Board columns: the stages a ticket moves through."""

from __future__ import annotations

from itsm.dbtypes import UTCDateTime, utcnow
from itsm.extensions import db


class BoardColumn(db.Model):
    __tablename__ = "board_columns"

    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(60), nullable=False, unique=True)
    position = db.Column(db.Integer, nullable=False, default=0)
    is_done_column = db.Column(db.Boolean, nullable=False, default=False)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)

    def __repr__(self) -> str:
        return f"<BoardColumn {self.name}>"


def ordered_columns() -> list[BoardColumn]:
    return db.session.scalars(db.select(BoardColumn).order_by(BoardColumn.position, BoardColumn.id)).all()


def first_column() -> BoardColumn | None:
    return db.session.scalars(
        db.select(BoardColumn).order_by(BoardColumn.position, BoardColumn.id).limit(1)
    ).first()
