"""Forgot password, reset password, and accepting an invitation: the pages behind the account emails."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for

from itsm.auth import sessions
from itsm.auth.forms import ForgotPasswordForm, NewPasswordForm
from itsm.extensions import db
from itsm.users import links
from itsm.users.account_mail import request_password_reset
from itsm.users.service import UserError, check_password_policy

bp = Blueprint("account", __name__)

SENT = ("If an account exists for that address, we have emailed it a link to choose a new password. "
        "The link works once and expires soon.")


@bp.route("/forgot-password", methods=["GET", "POST"])
def forgot_password():
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        request_password_reset(form.email.data)
        db.session.commit()
        # The same answer whether or not the address has an account.
        flash(SENT, "info")
        return redirect(url_for("auth.login"))
    return render_template("auth/forgot.html", form=form), 400 if form.errors else 200


def _choose_password(token: str, purpose: str):
    try:
        user = links.user_for(token, purpose)
    except links.LinkError as err:
        return render_template("auth/link_invalid.html", message=str(err), purpose=purpose), 400
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            check_password_policy(form.password.data)
        except UserError as err:
            form.password.errors.append(str(err))
        else:
            user.set_password(form.password.data)  # every earlier link and every login session end
            db.session.commit()
            sessions.log_in(user)
            flash("Welcome! Your password is set." if purpose == "invite" else "Your password has been changed.",
                  "success")
            return redirect(url_for("board.board"))
    return render_template("auth/choose_password.html", form=form, user=user, purpose=purpose), \
        400 if form.errors else 200


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
def reset_password(token: str):
    return _choose_password(token, "reset")


@bp.route("/invitation/<token>", methods=["GET", "POST"])
def accept_invitation(token: str):
    return _choose_password(token, "invite")
