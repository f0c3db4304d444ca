"""Admin-only blueprints: every route in them needs a signed-in admin."""

from __future__ import annotations

from flask import Blueprint, abort
from flask_login import current_user, login_required


def admin_blueprint(name: str, import_name: str, url_prefix: str) -> Blueprint:
    bp = Blueprint(name, import_name, url_prefix=url_prefix)

    @bp.before_request
    @login_required
    def require_admin():
        if not current_user.is_admin:
            abort(403, "Only admins can open the admin pages.")

    return bp
