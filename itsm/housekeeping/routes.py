"""/admin/settings: the settings admins may change without a redeploy."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, DecimalField
from wtforms.validators import NumberRange, Optional

from itsm.admin.guard import admin_blueprint
from itsm.extensions import db
from itsm.housekeeping import settings

bp = admin_blueprint("settings", __name__, "/admin/settings")


class SettingsForm(FlaskForm):
    archive_after_hours = DecimalField(
        "Archive done tickets after (hours)", places=None,
        validators=[Optional(), NumberRange(min=settings.MIN_ARCHIVE_HOURS, max=settings.MAX_ARCHIVE_HOURS,
                                            message="Enter a number of hours above 0, at most 87600 (10 years).")])
    use_default = BooleanField("Use the default from TICKET_ARCHIVE_AFTER_HOURS")


@bp.route("", methods=["GET", "POST"])
def index():
    default = current_app.config["TICKET_ARCHIVE_AFTER_HOURS"]
    stored = settings.get(settings.ARCHIVE_AFTER_HOURS)
    form = SettingsForm()
    if not form.is_submitted():
        form.use_default.data = stored is None
        form.archive_after_hours.data = float(stored) if stored is not None else default
    if form.validate_on_submit():
        if form.use_default.data:
            settings.put(settings.ARCHIVE_AFTER_HOURS, None, current_user.id)
        elif form.archive_after_hours.data is None:
            form.archive_after_hours.errors.append("Enter a number of hours, or use the default.")
        else:
            settings.put(settings.ARCHIVE_AFTER_HOURS, f"{float(form.archive_after_hours.data):g}", current_user.id)
        if not form.errors:
            db.session.commit()
            flash(f"Done tickets are archived after {settings.archive_after_hours():g} hours.", "success")
            return redirect(url_for("settings.index"))
    return render_template("admin/settings.html", form=form, default=default,
                           effective=settings.archive_after_hours()), 400 if form.errors else 200
