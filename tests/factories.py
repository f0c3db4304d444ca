"""Small factories for users, columns and tickets, built through the services."""

from __future__ import annotations

import itertools
import struct
import zlib

from itsm.board.models import BoardColumn, ordered_columns
from itsm.board.service import create_column
from itsm.extensions import db
from itsm.tickets import service
from itsm.tickets.models import Ticket
from itsm.users.models import User
from itsm.users.service import create_user, find_by_email

PASSWORD = "correct-horse-battery"


def _committed(obj):
    """Commit and reload, so the object's fields stay readable after its app context ends."""
    db.session.commit()
    db.session.refresh(obj)
    return obj
_seq = itertools.count(1)


def make_board() -> list[BoardColumn]:
    for name, done in (("New", False), ("In progress", False), ("Waiting", False), ("Done", True)):
        create_column(name, done)
    db.session.commit()
    return ordered_columns()


def column(name: str) -> BoardColumn:
    return db.session.scalar(db.select(BoardColumn).where(BoardColumn.name == name))


def make_user(email: str | None = None, role: str = "agent", name: str = "", password: str = PASSWORD) -> User:
    user = create_user(email=email or f"user{next(_seq)}@example.com", password=password, role=role, name=name)
    return _committed(user)


def user(email: str) -> User:
    return find_by_email(email)


def make_ticket(title: str | None = None, column_name: str = "New", actor: User | None = None, **fields) -> Ticket:
    ticket = service.create_ticket(actor=actor, column=column(column_name),
                                   title=title or f"Ticket {next(_seq)}", **fields)
    return _committed(ticket)


def make_column_named(name: str, done: bool = False) -> BoardColumn:
    return _committed(create_column(name, done))


def make_template(title: str | None = None, *, start, actor: User | None = None, ticket_fields: dict | None = None,
                  **rule) -> Ticket:
    """A recurring template whose series starts at ``start``; ``rule`` holds recurrence_* values."""
    from itsm.recurring import service as recurring
    from itsm.recurring.forms import Recurrence

    ticket = service.create_ticket(actor=actor, column=None, title=title or f"Recurring {next(_seq)}",
                                   **(ticket_fields or {}))
    recurring.make_template(ticket, actor, Recurrence.build(start, **rule))
    return _committed(ticket)


def png(width: int, height: int) -> bytes:
    """A valid RGB PNG of a red-to-blue gradient, built here: signature, IHDR, one zlib-compressed IDAT, IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"".join(bytes((255 * x // width, 0, 255 * y // height)) for x in range(width))
                    for y in range(height))  # filter byte 0 (None) before each row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
