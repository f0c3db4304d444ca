"""Account rules shared by the CLI and the admin pages."""

from __future__ import annotations

import secrets
from functools import cache

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func
from werkzeug.security import check_password_hash, generate_password_hash

from itsm.extensions import db
from itsm.users.models import MIN_PASSWORD_LENGTH, ROLES, User


class UserError(ValueError):
    """A request about accounts that breaks a rule; the message is for people."""

    def __init__(self, message: str, field: str = "email") -> None:
        super().__init__(message)
        self.field = field


def normalize_email(email: str) -> str:
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as err:
        raise UserError(f"Invalid email address: {err}") from None


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"Password must be at least {MIN_PASSWORD_LENGTH} characters.", "password")
    if len(password) > 256:
        raise UserError("Password must be at most 256 characters.", "password")


def email_key(email: str | None) -> str:
    """The form accounts are looked up by (and the login limit counts by)."""
    return (email or "").strip().lower()


def find_by_email(email: str) -> User | None:
    return db.session.scalar(db.select(User).where(func.lower(User.email) == email_key(email)))


@cache
def _stand_in_hash() -> str:
    return generate_password_hash(secrets.token_urlsafe(16))


def authenticate(email: str, password: str) -> User | None:
    """The active user with this email and password, or None.

    An unknown email costs one password check too, so the time a failed login takes does not
    tell whether the account exists.
    """
    user = find_by_email(email)
    if user is None:
        check_password_hash(_stand_in_hash(), password)
        return None
    return user if user.check_password(password) and user.active else None


def checked_new_user(email: str, role: str, name: str | None, password: str | None = None) -> tuple[str, str]:
    """The normalized email and name of a user about to be added, or the rule they break."""
    email = normalize_email(email)
    if role not in ROLES:
        raise UserError(f"Unknown role {role!r}; choose one of {', '.join(ROLES)}.", "role")
    name = name or ""
    if len(name) > 120:
        raise UserError("Name must be at most 120 characters.", "name")
    if password is not None:
        check_password_policy(password)
    if find_by_email(email):
        raise UserError(f"A user with email {email} already exists.")
    return email, name.strip()


def create_user(*, email: str, password: str, role: str = "agent", name: str = "") -> User:
    """Add a user to the session (the caller commits)."""
    email, name = checked_new_user(email, role, name, password)
    user = User(email=email, name=name, role=role, active=True)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    return user


def active_admin_count() -> int:
    return db.session.scalar(
        db.select(func.count()).select_from(User).where(User.role == "admin", User.active.is_(True))
    )


def update_user(user: User, *, role: str, active: bool, actor: User) -> None:
    """Change role or activation, keeping at least one active admin."""
    if role not in ROLES:
        raise UserError(f"Unknown role {role!r}.")
    losing_admin = user.is_admin and user.active and (role != "admin" or not active)
    if losing_admin and active_admin_count() <= 1:
        raise UserError("This is the last active admin; make someone else an admin first.")
    if user.id == actor.id and not active:
        raise UserError("You cannot deactivate your own account.")
    user.role = role
    user.active = active


def admins_wanting(preference: str) -> list[User]:
    """Active admins who left ``preference`` (a ``notify_*`` column) on, by id."""
    return db.session.scalars(db.select(User).where(User.role == "admin", User.active.is_(True),
                                                    getattr(User, preference).is_(True)).order_by(User.id)).all()


def active_users() -> list[User]:
    return db.session.scalars(db.select(User).where(User.active.is_(True)).order_by(User.name, User.email)).all()
