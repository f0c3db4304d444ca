"""/admin/automation: what every background job did, when, and how long it took."""

from __future__ import annotations

from datetime import timedelta

from flask import abort, flash, redirect, render_template, request, url_for
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job
from sqlalchemy import func
from wtforms import Form, SelectField
from wtforms.validators import Optional

from itsm.admin.guard import admin_blueprint
from itsm.automation import dashboard, recurring_health
from itsm.dbtypes import utcnow
from itsm.extensions import db, redis_client
from itsm.formutil import options
from itsm.schedules.models import PeriodicTask
from itsm.web import ActionForm, Page, page_number
from jobs import registry
from jobs.connection import unavailable
from jobs.exceptions import JobsError
from jobs.models import RUN_STATUSES, JobRun

bp = admin_blueprint("automation", __name__, "/admin/automation")


class RunFilterForm(Form):
    task = SelectField("Task", validators=[Optional()])
    status = SelectField("Status", validators=[Optional()],
                         choices=options([("", "Any status")] + [(s, s) for s in RUN_STATUSES]))


def _task_names() -> list[str]:
    # The registry and the schedules name every task; a DISTINCT over the runs would read them all.
    seen = set(registry.all_tasks())
    seen.update(db.session.scalars(db.select(PeriodicTask.task).distinct()))
    return sorted(seen)


COUNT_CAP = 10_000  # past this the pager says "10,000+": counting a million rows is not worth the wait


def _capped_count(conditions) -> int:
    ids = db.select(JobRun.id).where(*conditions).limit(COUNT_CAP + 1).subquery()
    return db.session.scalar(db.select(func.count()).select_from(ids))


def _overview() -> dict:
    now = utcnow()
    return {"now": now, "tasks": dashboard.tasks(now), "failures": dashboard.recent_failures(),
            "failures_24h": dashboard.failures_since(now - timedelta(hours=24)), "outbox": dashboard.outbox(now),
            "backups": dashboard.backups(), "runtime": dashboard.runtime(), "recurring": recurring_health.collect()}


@bp.get("")
def index():
    form = RunFilterForm(request.args)
    form.task.choices = options([("", "All tasks")] + [(n, n) for n in _task_names()])
    number = page_number()
    if not form.validate():
        return render_template("automation/index.html", form=form, page=None, **_overview()), 400
    conditions = []
    if form.task.data:
        conditions.append(JobRun.task_name == form.task.data)
    if form.status.data:
        conditions.append(JobRun.status == form.status.data)
    per_page = 50
    total = _capped_count(conditions)
    rows = db.session.scalars(db.select(JobRun).where(*conditions)
                              .order_by(JobRun.created_at.desc(), JobRun.id.desc())
                              .limit(per_page).offset((number - 1) * per_page)).all()
    page = Page(items=rows, page=number, per_page=per_page, total=total)
    if number > page.pages and total <= COUNT_CAP:
        abort(404, f"There is no page {number}; the last page is {page.pages}.")
    return render_template("automation/index.html", form=form, page=page, count_cap=COUNT_CAP, **_overview())


@bp.get("/runs/<int:run_id>")
def run_detail(run_id: int):
    run = db.session.get(JobRun, run_id) or abort(404, f"There is no run #{run_id}.")
    attempts = db.session.scalars(db.select(JobRun).where(JobRun.job_id == run.job_id)
                                  .order_by(JobRun.attempt)).all()
    return render_template("automation/run.html", run=run, attempts=attempts, action_form=ActionForm())


@bp.post("/runs/<int:run_id>/run-again")
def run_again(run_id: int):
    """Enqueue the same task with the same arguments as a new job."""
    run = db.session.get(JobRun, run_id) or abort(404, f"There is no run #{run_id}.")
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        task = registry.get(run.task_name)
        job = Job.fetch(run.job_id, connection=redis_client())
        _, args, kwargs = job.args
        handle = task.apply_async(args, kwargs)
    except NoSuchJobError:
        flash("The job's arguments are no longer kept in Redis; enqueue it again from its source.", "error")
        return redirect(url_for("automation.run_detail", run_id=run.id))
    except RedisError as err:
        flash(f"Could not run {run.task_name} again: {unavailable(err)}", "error")
        return redirect(url_for("automation.run_detail", run_id=run.id))
    except JobsError as err:
        flash(f"Could not run {run.task_name} again: {err}", "error")
        return redirect(url_for("automation.run_detail", run_id=run.id))
    flash(f"{run.task_name} enqueued again as job {handle.id[:8]}.", "success")
    return redirect(url_for("automation.index", task=run.task_name))
