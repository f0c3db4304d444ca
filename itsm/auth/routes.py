"""Session login and logout."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from itsm.auth import sessions, throttle
from itsm.auth.forms import LoginForm
from itsm.users.service import authenticate
from itsm.web import safe_next

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")) or url_for("board.board"))
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    if form.validate_on_submit():
        address = throttle.client_address()
        wait = throttle.retry_after(form.email.data, address)
        if wait is not None:
            # Checked before the password, the same for every address: a right password does not
            # get through, and the answer does not tell whether the account exists.
            page = render_template("auth/login.html", form=form, lockout=throttle.message(wait))
            return page, 429, {"Retry-After": str(wait)}
        user = authenticate(form.email.data, form.password.data)
        if user is None:
            # One message for every case so the form does not reveal which accounts exist.
            throttle.record_failure(form.email.data, address)
            form.password.errors.append("Email or password is incorrect.")
        else:
            throttle.clear(form.email.data)
            sessions.log_in(user, remember=form.remember.data)
            return redirect(safe_next(form.next.data) or url_for("board.board"))
    status = 400 if form.errors else 200
    return render_template("auth/login.html", form=form), status


@bp.get("/logout")
def confirm_logout():
    """A page with the Log out button: a GET (a link, an image on another site) changes nothing."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    return render_template("auth/logout.html")


@bp.post("/logout")
def logout():
    # CSRF-checked like every POST: another site cannot log anyone out.
    if current_user.is_authenticated:
        sessions.log_out()
        flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))
