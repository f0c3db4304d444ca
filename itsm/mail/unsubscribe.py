"""/unsubscribe/<token>: a requester stops ticket updates through the signed link in every update.

GET only shows the page (mail scanners follow links); the button POSTs."""

from __future__ import annotations

from flask import Blueprint, abort, render_template

from itsm.extensions import db
from itsm.mail import preferences
from itsm.web import ActionForm

bp = Blueprint("unsubscribe", __name__)


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
def unsubscribe(token: str):
    address = preferences.address_of(token)
    if address is None:
        abort(404, "This unsubscribe link is not valid. Use the link from one of our emails.")
    form = ActionForm()
    done = False
    if form.validate_on_submit():
        preferences.opt_out(address)
        db.session.commit()
        done = True
    return render_template("unsubscribe.html", address=address, done=done or preferences.opted_out(address),
                           form=form)
