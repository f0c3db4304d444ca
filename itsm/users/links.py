"""Signed, expiring, single-use account links: an invitation to set a first password, and a password reset.

Nothing is stored: the link carries the user's id and a fingerprint of their current password
hash, signed with SECRET_KEY and a salt per purpose. Setting a password changes the hash, so
every link made before it stops working: each link works once.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from itsm.extensions import db
from itsm.users.models import User

PURPOSES = ("invite", "reset")


def max_age(purpose: str) -> timedelta:
    config = current_app.config
    if purpose == "invite":
        return timedelta(hours=config["INVITE_MAX_AGE_HOURS"])
    return timedelta(minutes=config["PASSWORD_RESET_MAX_AGE_MINUTES"])


def _signer(purpose: str) -> URLSafeTimedSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown account link purpose {purpose!r}")
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=f"itsm-account-{purpose}")


def _fingerprint(user: User) -> str:
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:20]


def make_token(user: User, purpose: str) -> str:
    return _signer(purpose).dumps({"u": user.id, "p": _fingerprint(user)})


def url_for_token(token: str, purpose: str) -> str:
    path = "invitation" if purpose == "invite" else "reset-password"
    return f"{current_app.config['BASE_URL']}/{path}/{token}"


class LinkError(ValueError):
    """A link that cannot be used; the message is for the person who followed it."""


def user_for(token: str, purpose: str) -> User:
    """The user a valid, unexpired, unused link was made for."""
    try:
        data = _signer(purpose).loads(token, max_age=int(max_age(purpose).total_seconds()))
    except SignatureExpired:
        raise LinkError("This link has expired.") from None
    except BadSignature:
        raise LinkError("This link is not valid. Use the whole link from the email.") from None
    user = db.session.get(User, data.get("u")) if isinstance(data, dict) and isinstance(data.get("u"), int) else None
    if user is None or not user.active or data.get("p") != _fingerprint(user):
        raise LinkError("This link has already been used or is no longer valid.")
    return user
