"""/admin/outbox: every email with its state, attempts and last error; retry, retry all, test."""

from __future__ import annotations

from datetime import timedelta

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from redis.exceptions import RedisError
from sqlalchemy import func, update
from wtforms import EmailField
from wtforms.validators import DataRequired, Email, Length

from itsm.admin.guard import admin_blueprint
from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.mail import sink
from itsm.mail.delivery import describe_delays
from itsm.mail.models import DEFERRED, STATUSES, EmailMessage, deferred
from itsm.mail.outbox import FLUSH_AFTER, queue_email, queue_sends
from itsm.web import ActionForm, Page, page_number
from jobs.connection import unavailable
from jobs.exceptions import JobsError

bp = admin_blueprint("outbox", __name__, "/admin/outbox")
PER_PAGE = 50


class TestEmailForm(FlaskForm):
    to = EmailField("Send a test email to", validators=[DataRequired(), Length(max=254),
                                                          Email(message="Enter a valid email address.")])


@bp.get("")
def index():
    status = request.args.get("status", "")
    if status and status not in (*STATUSES, DEFERRED):
        abort(400, f"Unknown status {status!r}.")
    number = page_number()
    conditions = [deferred()] if status == DEFERRED else [EmailMessage.status == status] if status else []
    total = db.session.scalar(db.select(func.count(EmailMessage.id)).where(*conditions))
    rows = db.session.scalars(db.select(EmailMessage).where(*conditions)
                              .order_by(EmailMessage.created_at.desc(), EmailMessage.id.desc())
                              .limit(PER_PAGE).offset((number - 1) * PER_PAGE)).all()
    page = Page(items=rows, page=number, per_page=PER_PAGE, total=total)
    if number > page.pages:
        abort(404, f"There is no page {number}; the last page is {page.pages}.")
    counts = dict(db.session.execute(db.select(EmailMessage.status, func.count()).group_by(EmailMessage.status)).all())
    counts[DEFERRED] = db.session.scalar(db.select(func.count(EmailMessage.id)).where(deferred()))
    form = TestEmailForm(to=current_user.email)
    sink_dir = current_app.config["MAIL_SINK_DIR"]
    config = current_app.config
    return render_template("admin/outbox.html", page=page, status=status, counts=counts,
                           statuses=(*STATUSES, DEFERRED), form=form, action_form=ActionForm(), sink_dir=sink_dir,
                           sink=sink.recent(sink_dir) if sink_dir else [],
                           sink_state=sink.state(sink_dir) if sink_dir else None,
                           retry_delays=describe_delays(config["MAIL_RETRY_DELAYS"]),
                           deadline_hours=config["MAIL_DELIVERY_DEADLINE_HOURS"],
                           deadline=timedelta(hours=config["MAIL_DELIVERY_DEADLINE_HOURS"]))


@bp.get("/<int:message_id>")
def message(message_id: int):
    """One email as it was written: its text body, and its HTML body shown as text (never rendered)."""
    message = db.session.get(EmailMessage, message_id) or abort(404, f"There is no email #{message_id}.")
    return render_template("admin/outbox_message.html", m=message, action_form=ActionForm(),
                           deadline=timedelta(hours=current_app.config["MAIL_DELIVERY_DEADLINE_HOURS"]))


def _requeue(ids: list[int]) -> bool:
    """Failed rows back to pending, with a fresh delivery deadline and retry schedule, and handed to the
    send job; False when Redis is down (they stay pending and flush_outbox sends them when it is back)."""
    if not ids:
        return True
    now = utcnow()
    db.session.execute(update(EmailMessage).where(EmailMessage.id.in_(ids), EmailMessage.status == "failed")
                       .values(status="pending", last_error=None, queued_at=None, deferrals=0,
                               delivery_started_at=now, next_attempt_at=now + FLUSH_AFTER))
    db.session.commit()
    try:
        queue_sends(ids)
    except (RedisError, JobsError) as err:
        reason = unavailable(err) if isinstance(err, RedisError) else str(err)
        flash(f"Back in the outbox, but not handed to a worker ({reason}); flush_outbox sends them once "
              "Redis is back.", "error")
        return False
    return True


def _check_token() -> None:
    if not ActionForm().validate_on_submit():
        abort(400, "The form was missing its security token. Reload the page and try again.")


@bp.post("/<int:message_id>/retry")
def retry(message_id: int):
    _check_token()
    message = db.session.get(EmailMessage, message_id) or abort(404, f"There is no email #{message_id}.")
    if message.status != "failed":
        flash(f"Email #{message.id} is {message.status}; only failed emails are retried.", "info")
    elif _requeue([message.id]):
        flash(f"Email #{message.id} to {message.to_address} queued again.", "success")
    return redirect(url_for("outbox.index", status=request.args.get("status") or None))


@bp.post("/retry-failed")
def retry_failed():
    _check_token()
    ids = list(db.session.scalars(db.select(EmailMessage.id).where(EmailMessage.status == "failed")))
    if not ids:
        flash("No failed emails.", "info")
    elif _requeue(ids):
        flash(f"{len(ids)} failed email(s) queued again.", "success")
    return redirect(url_for("outbox.index"))


@bp.post("/test")
def test():
    form = TestEmailForm()
    if not form.validate_on_submit():
        flash("Enter a valid email address for the test email.", "error")
        return redirect(url_for("outbox.index"))
    message = queue_email("test", form.to.data, "itsm test email", "test", sender=current_user.display_name)
    db.session.commit()
    flash(f"Test email #{message.id} to {message.to_address} is in the outbox.", "success")
    return redirect(url_for("outbox.index"))
