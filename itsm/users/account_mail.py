"""Account emails: invitations and password resets. They go through the outbox like every email, and
are always sent (no preference turns them off); neither flow tells anyone whether an address has an account."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import select
from werkzeug.security import generate_password_hash

from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.mail.models import EmailMessage
from itsm.mail.outbox import queue_email
from itsm.users import links
from itsm.users.models import User
from itsm.users.service import UserError, checked_new_user, find_by_email, normalize_email

RESET_EMAIL_EVERY = timedelta(minutes=5)  # at most one reset email per address this often


def _hours(delta: timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    if hours >= 48 and hours % 24 == 0:
        return f"{hours // 24} days"
    if hours >= 1:
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{int(delta.total_seconds() // 60)} minutes"


def invite_user(*, email: str, name: str, role: str, actor: User) -> User:
    """Add a user who chooses their own password through an emailed link (the caller commits)."""
    email, name = checked_new_user(email, role, name)
    # A password nobody knows until the link sets a real one.
    user = User(email=email, name=name, role=role, active=True, invited_at=utcnow(),
                password_hash=generate_password_hash(secrets.token_urlsafe(32)))
    db.session.add(user)
    db.session.flush()
    send_invitation(user, actor)
    return user


def send_invitation(user: User, actor: User) -> None:
    if not user.invite_pending:
        raise UserError(f"{user.email} has already set a password.")
    user.invited_at = utcnow()
    url = links.url_for_token(links.make_token(user, "invite"), "invite")
    queue_email("invite", user.email, "You are invited to the itsm service desk", "invite",
                user=user, by=actor.display_name, url=url, valid_for=_hours(links.max_age("invite")))


def request_password_reset(email: str) -> bool:
    """Email a reset link when the address belongs to an active account (the caller commits). The
    answer is for tests and logs only: pages must say the same thing either way."""
    try:
        email = normalize_email(email)
    except UserError:
        return False
    user = find_by_email(email)
    if user is None or not user.active:
        return False
    recent = db.session.scalar(select(EmailMessage.id).where(
        EmailMessage.kind == "password_reset", EmailMessage.to_address == user.email,
        EmailMessage.created_at > utcnow() - RESET_EMAIL_EVERY).limit(1))
    if recent is not None:
        return False  # one is on its way: repeated clicks must not flood the inbox
    url = links.url_for_token(links.make_token(user, "reset"), "reset")
    queue_email("password_reset", user.email, "Reset your itsm password", "password_reset",
                user=user, url=url, valid_for=_hours(links.max_age("reset")))
    return True
