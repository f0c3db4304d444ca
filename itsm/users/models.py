"""People who use the desk: admins and agents."""

from __future__ import annotations

from flask_login import UserMixin
from sqlalchemy import CheckConstraint
from werkzeug.security import check_password_hash, generate_password_hash

from itsm.dbtypes import UTCDateTime, one_of, utcnow
from itsm.extensions import db

ROLES = ("admin", "agent")
MIN_PASSWORD_LENGTH = 10

# Email a user may turn off on their profile; the last three are for admins.
NOTIFICATION_KINDS = {
    "notify_assigned": "Tickets assigned to me (including new recurring occurrences)",
    "notify_system_failures": "System failures: a job that failed for good, a failed backup, a late schedule",
    "notify_admin_actions": "Things that need an admin",
    "notify_operational": "A daily digest of the automation: runs, failures, archived tickets, backups",
}
ADMIN_KINDS = ("notify_system_failures", "notify_admin_actions", "notify_operational")


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(one_of("role", ROLES), name="role"),)

    id = db.Column(db.Integer, primary_key=True)
    email = db.Column(db.String(254), nullable=False, unique=True)
    name = db.Column(db.String(120), nullable=False, default="")
    password_hash = db.Column(db.String(255), nullable=False)
    role = db.Column(db.String(16), nullable=False, default="agent")
    active = db.Column(db.Boolean, nullable=False, default=True)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    notify_assigned = db.Column(db.Boolean, nullable=False, default=True)
    notify_system_failures = db.Column(db.Boolean, nullable=False, default=True)
    notify_admin_actions = db.Column(db.Boolean, nullable=False, default=True)
    notify_operational = db.Column(db.Boolean, nullable=False, default=False)
    invited_at = db.Column(UTCDateTime, nullable=True)  # set for users added by an email invitation
    # Changes with every new password: account links signed before it no longer work (single use).
    password_changed_at = db.Column(UTCDateTime, nullable=True)
    # The IANA zone the user reads times in (their profile); None means TIME_ZONE.
    time_zone = db.Column(db.String(64), nullable=True)

    # The login session this object was loaded through or logged in with (itsm.auth.sessions); not a column.
    session_token = None  # str: set on the loaded object only

    def get_id(self) -> str:
        """What Flask-Login keeps in the cookies: the login session's token, never the user's id, so a
        session ended on the server cannot be brought back by a cookie."""
        if not self.session_token:
            raise RuntimeError("log users in through itsm.auth.sessions.log_in")
        return self.session_token

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)
        self.password_changed_at = utcnow()

    @property
    def invite_pending(self) -> bool:
        """Invited by email and has not chosen a password yet."""
        return self.invited_at is not None and self.password_changed_at is None

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def display_name(self) -> str:
        return self.name or self.email

    def __repr__(self) -> str:
        return f"<User {self.email} {self.role}>"
