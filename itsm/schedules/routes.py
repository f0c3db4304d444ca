"""/admin/schedules: every periodic job, its schedule in words, next runs, history; edit, toggle, run now."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for

from itsm.admin.guard import admin_blueprint, commit_or_flash
from itsm.automation.models import JobRun
from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.formutil import options
from itsm.schedules import service
from itsm.schedules.describe import describe, next_runs, state_of
from itsm.schedules.forms import OneOffForm, PeriodicTaskForm, local_to_utc
from itsm.schedules.models import PeriodicTask, ScheduleFiring
from itsm.schedules.validation import Definition, ValidationError, parse_json
from itsm.templating import show_time
from itsm.tickets.forms import ActionForm
from jobs.exceptions import JobsError

bp = admin_blueprint("schedules", __name__, "/admin/schedules")


def _row_or_404(task_id: int) -> PeriodicTask:
    return db.session.get(PeriodicTask, task_id) or abort(404, f"There is no periodic task #{task_id}.")


def _task_names() -> list[str]:
    return sorted(service.known_tasks())


def _last_firings(ids: list[int]) -> dict[int, ScheduleFiring]:
    if not ids:
        return {}
    latest = (db.select(ScheduleFiring.periodic_task_id, db.func.max(ScheduleFiring.tick_at).label("tick"))
              .where(ScheduleFiring.periodic_task_id.in_(ids)).group_by(ScheduleFiring.periodic_task_id).subquery())
    rows = db.session.scalars(db.select(ScheduleFiring).join(
        latest, (ScheduleFiring.periodic_task_id == latest.c.periodic_task_id)
        & (ScheduleFiring.tick_at == latest.c.tick)))
    return {f.periodic_task_id: f for f in rows}


@bp.get("")
def index():
    now = utcnow()
    rows = db.session.scalars(db.select(PeriodicTask).order_by(PeriodicTask.name)).unique().all()
    one_off = OneOffForm()
    one_off.task.choices = options((n, n) for n in _task_names())
    return render_template("schedules/index.html", rows=rows, describe=describe, next_runs=next_runs, now=now,
                           state_of=state_of, last=_last_firings([r.id for r in rows]), one_off=one_off,
                           action_form=ActionForm())


def _form_page(form: PeriodicTaskForm, row: PeriodicTask | None, status: int = 200):
    state = state_of(row, utcnow()) if row is not None else ("new", None)
    return render_template("schedules/form.html", form=form, row=row, state=state), status


def _save(form: PeriodicTaskForm, row: PeriodicTask | None) -> PeriodicTask | None:
    """Validate every field (JSON included) and save; errors go next to their fields."""
    definition = form.to_definition()
    errors = dict(form.json_errors)
    try:
        service.check(definition, row)
    except ValidationError as err:
        errors = {**err.errors, **errors}
    if errors:
        form.add_errors(errors)
        return None
    return service.save(definition, row)


@bp.route("/new", methods=["GET", "POST"])
def new():
    form = PeriodicTaskForm()
    form.fill_choices(_task_names(), tuple(current_app.config["JOBS_QUEUES"]))
    if form.validate_on_submit():
        row = _save(form, None)
        if row is None:
            db.session.rollback()
        else:
            db.session.commit()
            flash(f"Periodic task {row.name} created.", "success")
            return redirect(url_for("schedules.index"))
    return _form_page(form, None, 400 if form.errors else 200)


@bp.route("/<int:task_id>/edit", methods=["GET", "POST"])
def edit(task_id: int):
    row = _row_or_404(task_id)
    form = PeriodicTaskForm()
    form.fill_choices(_task_names(), tuple(current_app.config["JOBS_QUEUES"]))
    if request.method == "GET":
        form.load(service.definition_of(row))
    if form.validate_on_submit():
        if _save(form, row) is None:
            db.session.rollback()
        else:
            db.session.commit()
            flash(f"Periodic task {row.name} saved" + (" (overrides the code's default)." if row.overridden
                                                       else "."), "success")
            return redirect(url_for("schedules.index"))
    return _form_page(form, row, 400 if form.errors else 200)


def _action(task_id: int) -> PeriodicTask:
    row = _row_or_404(task_id)
    if not ActionForm().validate_on_submit():
        abort(400, "The form was missing its security token. Reload the page and try again.")
    return row


@bp.post("/<int:task_id>/toggle")
def toggle(task_id: int):
    row = _action(task_id)
    name = row.name
    commit_or_flash(lambda: service.set_enabled(row, not row.enabled),
                    lambda: f"{name} {'enabled' if row.enabled else 'disabled'}.", (ValidationError,),
                    error_prefix=f"Could not change {name}: ")
    return redirect(url_for("schedules.index"))


@bp.post("/<int:task_id>/reset")
def reset(task_id: int):
    row = _action(task_id)
    if row.source != "registry":
        abort(400, "Only periodic tasks defined in the code have a default to reset to.")
    name = row.name
    # A default this version's rules refuse (a bug in the code's schedule) is said, not a 500.
    commit_or_flash(lambda: service.reset_to_default(row), lambda: f"{name} is back to the code's default.",
                    (ValidationError,), error_prefix=f"Could not reset {name}: ")
    return redirect(url_for("schedules.index"))


@bp.post("/<int:task_id>/run")
def run_now(task_id: int):
    row = _action(task_id)
    try:
        handle = service.run_now(row)
    except JobsError as err:
        flash(f"Could not run {row.name}: {err}", "error")
    else:
        flash(f"{row.name} enqueued now as job {handle.id[:8]}.", "success")
    return redirect(url_for("schedules.index"))


@bp.post("/<int:task_id>/delete")
def delete(task_id: int):
    row = _action(task_id)
    if row.source == "registry":
        abort(400, "Periodic tasks defined in the code cannot be deleted; disable them instead.")
    db.session.delete(row)
    db.session.commit()
    flash(f"{row.name} deleted.", "success")
    return redirect(url_for("schedules.index"))


@bp.post("/one-off")
def one_off():
    form = OneOffForm()
    form.task.choices = options((n, n) for n in _task_names())
    if form.validate_on_submit():
        run_at = local_to_utc(form.run_at.data)
        try:
            args = parse_json(form.args.data or "[]", list, "args")
            name = f"one-off {form.task.data} at {run_at:%Y-%m-%d %H:%M} UTC"
            suffix = 1
            while service.name_taken(name + (f" #{suffix}" if suffix > 1 else ""), None):
                suffix += 1
            definition = Definition(name=name + (f" #{suffix}" if suffix > 1 else ""), task=form.task.data,
                                    kind="clocked", clocked_time=run_at, one_off=True, args=args,
                                    misfire_policy="once")
            service.save(definition)
        except (ValueError, ValidationError) as err:
            db.session.rollback()
            flash(f"One-off run not created: {err}", "error")
        else:
            db.session.commit()
            flash(f"One-off run of {form.task.data} planned for {show_time(run_at, label=True)}.",
                  "success")
    else:
        problems = "; ".join(f"{getattr(form, f).label.text}: {', '.join(e)}" for f, e in form.errors.items())
        flash(f"One-off run not created: {problems}", "error")
    return redirect(url_for("schedules.index"))


@bp.get("/<int:task_id>/history")
def history(task_id: int):
    row = _row_or_404(task_id)
    firings = db.session.scalars(db.select(ScheduleFiring).where(ScheduleFiring.periodic_task_id == row.id)
                                 .order_by(ScheduleFiring.tick_at.desc()).limit(200)).all()
    runs = {}
    job_ids = [f.job_id for f in firings]
    if job_ids:
        for run in db.session.scalars(db.select(JobRun).where(JobRun.job_id.in_(job_ids))
                                      .order_by(JobRun.attempt)):
            runs[run.job_id] = run  # the latest attempt wins
    return render_template("schedules/history.html", row=row, firings=firings, runs=runs, describe=describe,
                           state=state_of(row, utcnow()))

