"""A ticket's history in words: "Ada paused the schedule", "Column: New → Done", never "active: True → False".

Events keep what they recorded (field -> [old, new]); this only decides how a page says it, so rows
written by older versions read the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from itsm.board.models import BoardColumn
from itsm.extensions import db
from itsm.users.models import User

# The event says it all: its boolean change would only repeat the verb.
VERBS = {
    "created": "created the ticket",
    "scheduled": "set the schedule",
    "updated": "changed the ticket",
    "moved": "moved the ticket",
    "archived": "archived the ticket",
    "unarchived": "restored the ticket from the archive",
    "paused": "paused the schedule",
    "resumed": "resumed the schedule",
    "attached": "attached a file",
    "detached": "removed a file",
}
IMPLIED = {"archived": "archived", "unarchived": "archived", "paused": "active", "resumed": "active"}
LABELS = {
    "title": "Title", "description": "Description", "priority": "Priority", "column": "Column",
    "column_id": "Column", "assignee": "Assignee", "assignee_id": "Assignee", "requester_email": "Requester email",
    "category": "Category", "template": "From template", "recurrence": "Schedule",
    "next occurrence": "Next occurrence", "archived": "Archived", "active": "Schedule",
    "attachment": "File", "on": "On",
}
STATES = {"active": ("paused", "active"), "archived": ("not archived", "archived")}


@dataclass(frozen=True)
class Change:
    label: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class Described:
    verb: str
    changes: list[Change]


def _name_of(field: str, value) -> str:
    """A column or user recorded by id: its name (or that it is gone)."""
    model = BoardColumn if field == "column_id" else User
    row = db.session.get(model, value) if isinstance(value, int) else None
    if row is None:
        return f"#{value} (deleted)"
    return row.name if model is BoardColumn else row.display_name


def _word(field: str, value) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        off, on = STATES.get(field, ("no", "yes"))
        return on if value else off
    if field in ("column_id", "assignee_id"):
        return _name_of(field, value)
    return str(value)


def describe(event) -> Described:
    changes = dict(event.changes or {})
    kind = event.kind
    if kind == "commented":
        visibility = (changes.pop("comment", None) or [None, None])[1]
        verb = "added an internal comment" if visibility == "internal" else "added a comment"
    else:
        verb = VERBS.get(kind, kind)
        changes.pop(IMPLIED.get(kind, ""), None)
    if kind == "created" and event.ticket is not None and event.ticket.is_recurring:
        verb = "created the recurring ticket"
    lines = []
    for field, change in changes.items():
        old, new = (list(change) + [None, None])[:2] if isinstance(change, list | tuple) else (None, change)
        lines.append(Change(LABELS.get(field, field.replace("_", " ").capitalize()), _word(field, old),
                            _word(field, new)))
    return Described(verb=verb, changes=lines)
