"""Who opted out of what: users on their profile page, requesters through a signed link."""

from __future__ import annotations

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer

from itsm.extensions import db
from itsm.mail.models import EmailOptOut

_SALT = "itsm-unsubscribe"


def _signer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=_SALT)


def unsubscribe_token(address: str) -> str:
    return _signer().dumps(address.lower())


def address_of(token: str) -> str | None:
    """The address a link was made for, or None when the link was tampered with."""
    try:
        value = _signer().loads(token)
    except BadSignature:
        return None
    return value if isinstance(value, str) else None


def unsubscribe_url(address: str) -> str:
    return f"{current_app.config['BASE_URL']}/unsubscribe/{unsubscribe_token(address)}"


def opted_out(address: str) -> bool:
    return db.session.get(EmailOptOut, address.lower()) is not None


def opt_out(address: str) -> bool:
    """Stop ticket updates to this address; False when it had already opted out. Callers commit."""
    if opted_out(address):
        return False
    db.session.add(EmailOptOut(address=address.lower()))
    return True
