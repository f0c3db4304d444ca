"""Admin-only blueprints: every route in them needs a signed-in admin."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, abort, flash
from flask_login import current_user, login_required

from itsm.extensions import db


def admin_blueprint(name: str, import_name: str, url_prefix: str) -> Blueprint:
    bp = Blueprint(name, import_name, url_prefix=url_prefix)

    @bp.before_request
    @login_required
    def require_admin():
        if not current_user.is_admin:
            abort(403, "Only admins can open the admin pages.")

    return bp


def commit_or_flash(action: Callable[[], object], success: str | Callable[[], str],
                    errors: tuple[type[Exception], ...], error_prefix: str = "") -> bool:
    """Run a change; commit and flash ``success``, or roll back and flash the rule it broke."""
    try:
        action()
        db.session.commit()  # inside: the flush checks (the schedule rules) run here too
    except errors as err:
        db.session.rollback()
        flash(f"{error_prefix}{err}", "error")
        return False
    flash(success() if callable(success) else success, "success")
    return True
