"""/profile: a user's own email preferences."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField

from itsm.extensions import db
from itsm.users.models import ADMIN_KINDS, NOTIFICATION_KINDS

bp = Blueprint("profile", __name__)


class PreferencesForm(FlaskForm):
    pass


for _name, _label in NOTIFICATION_KINDS.items():
    setattr(PreferencesForm, _name, BooleanField(_label))


def _kinds() -> list[str]:
    return [k for k in NOTIFICATION_KINDS if current_user.is_admin or k not in ADMIN_KINDS]


@bp.route("/profile", methods=["GET", "POST"])
@login_required
def profile():
    form = PreferencesForm(obj=current_user)
    if form.validate_on_submit():
        for kind in _kinds():
            setattr(current_user, kind, form[kind].data)
        db.session.commit()
        flash("Email preferences saved.", "success")
        return redirect(url_for("profile.profile"))
    return render_template("profile.html", form=form, kinds=_kinds())
