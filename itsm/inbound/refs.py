"""What ties an email to its ticket: the subject tag ``[#123]``, a signed token in our Message-IDs and in
the body (``[ref:...]``, for providers that rewrite Message-IDs), and our Message-ID domain.

A token is the ticket id signed with SECRET_KEY (itsdangerous): a reply can name a ticket by it, but no
one can make up a token for another ticket."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask import current_app
from itsdangerous import BadSignature, Signer

PREFIX = "itsm-outbox-"
_SALT = "itsm ticket reference"
_OURS = re.compile(r"^itsm-outbox-(\d+)(?:\.(\d+\.[A-Za-z0-9_\-]+))?@(.+)$")


def _signer() -> Signer:
    return Signer(current_app.config["SECRET_KEY"], salt=_SALT)


def subject_tag(ticket_id: int) -> str:
    return f"[{current_app.config['MAIL_TICKET_PREFIX']}{ticket_id}]"


def token(ticket_id: int) -> str:
    """``123.<signature>``: the characters a Message-ID's left part and the body's [ref:...] allow."""
    return _signer().sign(str(ticket_id)).decode("ascii")


def ticket_of_token(value: str) -> int | None:
    try:
        ticket = _signer().unsign(value.encode("ascii")).decode("ascii")
    except (BadSignature, UnicodeError):
        return None
    return int(ticket) if ticket.isdigit() and len(ticket) <= 10 else None


def domain() -> str:
    """The right side of our Message-IDs: the same on every host (BASE_URL's), so mail of ours coming back
    is known whichever host sent it."""
    configured = current_app.config.get("MAIL_MESSAGE_ID_DOMAIN")
    return configured or urlsplit(current_app.config.get("BASE_URL") or "").hostname or "itsm.localhost"


def message_id(row_id: int, ticket_id: int | None) -> str:
    """The outbox row's Message-ID, the same on every attempt: ``<itsm-outbox-7.123.sig@desk.example>``."""
    middle = f".{token(ticket_id)}" if ticket_id else ""
    return f"<{PREFIX}{row_id}{middle}@{domain()}>"


def is_ours(value: str) -> bool:
    """A Message-ID (without <>) this desk made."""
    found = _OURS.match(value.strip().strip("<>"))
    return bool(found) and found.group(3).lower() == domain().lower()


def ticket_of_message_id(value: str) -> int | None:
    """The ticket one of our Message-IDs names (its signature checked), else None."""
    found = _OURS.match(value.strip().strip("<>"))
    if not found or not found.group(2) or found.group(3).lower() != domain().lower():
        return None
    return ticket_of_token(found.group(2))
