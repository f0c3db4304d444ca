"""/profile: a user's own name, time zone, password and email preferences.

Each part is its own form and POST, so a mistake in one (a wrong current password) never loses or saves
what was typed in another; a form with errors comes back with them next to its fields and changes nothing.
"""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError

from itsm.auth import sessions
from itsm.extensions import db
from itsm.formutil import strip
from itsm.users.models import ADMIN_KINDS, MIN_PASSWORD_LENGTH, NOTIFICATION_KINDS
from itsm.users.service import UserError, check_password_policy
from itsm.zones import known_zones

bp = Blueprint("profile", __name__)


class PreferencesForm(FlaskForm):
    pass


for _name, _label in NOTIFICATION_KINDS.items():
    setattr(PreferencesForm, _name, BooleanField(_label))


def printable(form, field) -> None:
    if field.data and not field.data.isprintable():
        raise ValidationError("Use letters, digits, spaces and punctuation only (no tabs or control characters).")


class DetailsForm(FlaskForm):
    name = StringField("Display name", filters=[strip], validators=[
        Length(max=120, message="Use at most 120 characters."), printable],
        description="Shown on the board, on tickets and in emails. Empty: your email address.")
    # "" is the desk's zone (TIME_ZONE), followed if an admin changes it; any other value is one of known_zones().
    time_zone = SelectField("Time zone", validate_choice=True,
                            description="Every time on every page and in your emails is shown in it.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        desk = current_app.config["TIME_ZONE"]
        self.time_zone.choices = [("", f"The desk's zone ({desk})")] + [(z, z) for z in sorted(known_zones())]
        self.time_zone.pre_validate = self._known

    def _known(self, form) -> None:
        if self.time_zone.data != "" and self.time_zone.data not in known_zones():
            raise ValidationError("Choose a time zone from the list (an IANA name such as Europe/Berlin).")


class PasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired("Enter your current password."),
                                                            Length(max=256)])
    new = PasswordField("New password", validators=[DataRequired("Enter a new password.")])
    confirm = PasswordField("Repeat the new password", validators=[
        DataRequired("Repeat the new password."), EqualTo("new", message="The two new passwords differ.")])


def _kinds() -> list[str]:
    return [k for k in NOTIFICATION_KINDS if current_user.is_admin or k not in ADMIN_KINDS]


def _page(preferences=None, details=None, password=None, status: int = 200):
    preferences = preferences or PreferencesForm(obj=current_user, formdata=None)
    details = details or DetailsForm(formdata=None, prefix="details", name=current_user.name,
                                     time_zone=current_user.time_zone or "")
    password = password or PasswordForm(formdata=None, prefix="password")
    return render_template("profile.html", form=preferences, details=details, password=password,
                           kinds=_kinds(), min_password_length=MIN_PASSWORD_LENGTH), status


@bp.route("/profile", methods=["GET", "POST"])
@login_required
def profile():
    """The page; its POST saves the email preferences."""
    if request.method == "GET":
        return _page()
    form = PreferencesForm()
    if not form.validate_on_submit():
        return _page(preferences=form, status=400)
    for kind in _kinds():
        setattr(current_user, kind, form[kind].data)
    db.session.commit()
    flash("Email preferences saved.", "success")
    return redirect(url_for("profile.profile"))


@bp.post("/profile/details")
@login_required
def save_details():
    form = DetailsForm(prefix="details")
    if not form.validate_on_submit():
        return _page(details=form, status=400)
    current_user.name = form.name.data or ""
    current_user.time_zone = form.time_zone.data or None
    db.session.commit()
    zone = current_user.time_zone or current_app.config["TIME_ZONE"]
    flash(f"Profile saved. Times are shown in {zone}.", "success")
    return redirect(url_for("profile.profile"))


def _password_problem(form: PasswordForm) -> bool:
    """The rules beyond the form's own, each written next to the field it concerns; True if one is broken."""
    if not current_user.check_password(form.current.data):
        form.current.errors.append("That is not your current password.")
    elif form.new.data == form.current.data:
        form.new.errors.append("That is your current password; choose a new one.")
    else:
        try:
            check_password_policy(form.new.data)
        except UserError as err:
            form.new.errors.append(str(err))
    return bool(form.current.errors or form.new.errors)


@bp.post("/profile/password")
@login_required
def change_password():
    form = PasswordForm(prefix="password")
    if not form.validate_on_submit() or _password_problem(form):
        return _page(password=form, status=400)
    user = current_user._get_current_object()
    remember = sessions.remembered()
    # The flush hook ends every login session of the user, this one included; this browser then gets a
    # new one, so whoever changed it stays logged in here and is logged out everywhere else.
    user.set_password(form.new.data)
    db.session.commit()
    sessions.log_in(user, remember=remember)
    flash("Your password has been changed. Every other login session of yours has ended.", "success")
    return redirect(url_for("profile.profile"))
