"""Small factories for users, columns and tickets, built through the services."""

from __future__ import annotations

import itertools

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
