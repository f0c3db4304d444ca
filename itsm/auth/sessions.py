"""Login sessions kept on the server: one ``user_sessions`` row per login.

The signed session cookie (and the remember-me cookie) carry a random token, never the user's id:
Flask-Login stores ``User.get_id()``, which is that token. The user loader finds the row and its user in
one query, so logging out (deleting the row) ends that login for good: a cookie saved before it, replayed,
opens nothing. Setting a new password or deactivating a user deletes every row of theirs, whatever code
path made the change (a flush hook on the user's columns), and a row unused for ``SESSION_IDLE_DAYS``
no longer counts. Only a digest of the token is stored, so a database backup holds no live session.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask import Flask, current_app, request
from flask_login import LoginManager, current_user, login_user, logout_user
from sqlalchemy import delete, event, inspect, select, update
from sqlalchemy.orm import Session

from itsm.config import ConfigError
from itsm.dbtypes import UTCDateTime, utcnow
from itsm.extensions import db
from itsm.users.models import User

# last_seen_at is rewritten at most this often per session: a write per request would be a write per page.
LAST_SEEN_RESOLUTION = timedelta(minutes=5)
USER_AGENT_LENGTH = 255
LAZY_ENDPOINTS = ("static", "health.healthz", "health.readyz")


class UserSession(db.Model):
    __tablename__ = "user_sessions"

    id = db.Column(db.String(64), primary_key=True)  # sha256 of the token in the cookie
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    last_seen_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    user_agent = db.Column(db.String(USER_AGENT_LENGTH), nullable=False, default="")
    remember = db.Column(db.Boolean, nullable=False, default=False)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _idle_cutoff():
    return utcnow() - timedelta(days=current_app.config["SESSION_IDLE_DAYS"])


def log_in(user: User, remember: bool = False) -> None:
    """Start a new login session for ``user`` in this browser and commit it."""
    if current_user.is_authenticated:
        log_out()
    token = secrets.token_urlsafe(32)
    # Each login also clears this user's sessions that ran out, so the table stays the size of its use.
    db.session.execute(delete(UserSession).where(UserSession.user_id == user.id,
                                                 UserSession.last_seen_at < _idle_cutoff()))
    # Printable characters only: a header is the client's to write, and PostgreSQL refuses a NUL in text.
    agent = "".join(ch for ch in request.user_agent.string or "" if ch.isprintable())[:USER_AGENT_LENGTH]
    db.session.add(UserSession(id=_digest(token), user_id=user.id, remember=remember, user_agent=agent))
    db.session.commit()
    user.session_token = token
    login_user(user, remember=remember)


def log_out() -> None:
    """End this browser's login session (only this one) and forget it in the cookies."""
    token = getattr(current_user, "session_token", None)
    if token:
        db.session.execute(delete(UserSession).where(UserSession.id == _digest(token)))
        db.session.commit()
    logout_user()


def remembered() -> bool:
    """Whether this browser's login session was started with "Keep me logged in"."""
    token = getattr(current_user, "session_token", None)
    return bool(token) and bool(db.session.scalar(select(UserSession.remember).where(
        UserSession.id == _digest(token))))


def load_user(token: str) -> User | None:
    """The active user whose live session ``token`` names, in one query; None ends the login."""
    row = db.session.execute(
        db.select(User, UserSession.last_seen_at).join(UserSession, UserSession.user_id == User.id)
        .where(UserSession.id == _digest(token), User.active.is_(True), UserSession.last_seen_at >= _idle_cutoff())
    ).first()
    if row is None:
        return None
    user, last_seen = row
    now = utcnow()
    if now - last_seen >= LAST_SEEN_RESOLUTION:
        # Safe to commit: load_current_user runs this before the view has changed anything.
        db.session.execute(update(UserSession).where(UserSession.id == _digest(token)).values(last_seen_at=now))
        db.session.commit()
    user.session_token = token
    return user


def _changed(user: User, column: str) -> bool:
    return inspect(user).attrs[column].history.has_changes()


def end_sessions_on_credential_change(session: Session, _flush_context, _instances) -> None:
    """A new password or a deactivation ends every login session of that user, in the same transaction."""
    ended = [user.id for user in session.dirty if isinstance(user, User) and user.id is not None
             and (_changed(user, "password_hash") or (_changed(user, "active") and not user.active))]
    if ended:
        session.connection().execute(delete(UserSession.__table__).where(UserSession.user_id.in_(ended)))


# Once, at import: every Session (web requests, workers, the CLI) ends sessions the same way.
event.listen(Session, "before_flush", end_sessions_on_credential_change)


def register(app: Flask, login_manager: LoginManager) -> None:
    if app.config["SESSION_IDLE_DAYS"] < 1:
        raise ConfigError(f"SESSION_IDLE_DAYS must be 1 or more, got {app.config['SESSION_IDLE_DAYS']}")
    login_manager.user_loader(load_user)

    @app.before_request
    def load_current_user() -> None:
        # The login is checked (and last_seen_at written) before any view runs, not at the first mention of
        # current_user, which may come after a view's writes. Static files need no user, and the health
        # endpoints must answer with the database down (/readyz checks an admin's session itself).
        if request.endpoint not in LAZY_ENDPOINTS:
            current_user._get_current_object()


def live_ids() -> set[str]:
    """Every session there is now (digests): what a restore keeps of the restored ones."""
    return set(db.session.scalars(select(UserSession.id)))


def end_all_but(keep: set[str]) -> int:
    """After a restore: end the restored sessions that had ended since the backup (logged out, a new
    password), so a cookie from before those cannot open the app again. Returns how many."""
    restored = set(db.session.scalars(select(UserSession.id)))
    ended = sorted(restored - keep)
    for start in range(0, len(ended), 500):
        db.session.execute(delete(UserSession).where(UserSession.id.in_(ended[start:start + 500])))
    return len(ended)

