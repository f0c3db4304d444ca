"""/admin/schedules: every periodic job, its schedule in words, next runs, history; edit, toggle, run now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import abort, current_app, flash, redirect, render_template, request, url_for

from itsm.admin.guard import admin_blueprint, commit_or_flash
from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.formutil import options
from itsm.schedules import lastrun, service
from itsm.schedules.describe import describe, next_runs, state_of
from itsm.schedules.describe import preview as preview_runs
from itsm.schedules.forms import OneOffForm, PeriodicTaskForm, local_to_utc
from itsm.schedules.models import PeriodicTask, ScheduleFiring
from itsm.schedules.scheduler import ENTRY_PREFIX
from itsm.schedules.validation import Definition, ValidationError, parse_json
from itsm.templating import show_time
from itsm.web import ActionForm
from jobs.exceptions import JobsError
from jobs.models import JobRun

bp = admin_blueprint("schedules", __name__, "/admin/schedules")


def _row_or_404(task_id: int) -> PeriodicTask:
    return db.session.get(PeriodicTask, task_id) or abort(404, f"There is no periodic task #{task_id}.")


def _task_names() -> list[str]:
    return sorted(service.known_tasks())


@bp.get("")
def index():
    now = utcnow()
    rows = db.session.scalars(db.select(PeriodicTask).order_by(PeriodicTask.name)).unique().all()
    one_off = OneOffForm()
    one_off.task.choices = options((n, n) for n in _task_names())
    return render_template("schedules/index.html", rows=rows, describe=describe, next_runs=next_runs, now=now,
                           state_of=state_of, last=lastrun.last_runs(rows),
                           week=lastrun.week_stats({r.task for r in rows}, now - lastrun.WEEK), one_off=one_off,
                           action_form=ActionForm())


PREVIEW_RUNS = 5


def _form_page(form: PeriodicTaskForm, row: PeriodicTask | None, status: int = 200, preview=None):
    state = state_of(row, utcnow()) if row is not None else ("new", None)
    return render_template("schedules/form.html", form=form, row=row, state=state, preview=preview), status


def _checked(form: PeriodicTaskForm, row: PeriodicTask | None) -> Definition | None:
    """The form's definition once every field (JSON included) passes; else None, errors next to their fields."""
    definition = form.to_definition()
    errors = dict(form.json_errors)
    try:
        service.check(definition, row)
    except ValidationError as err:
        errors = {**err.errors, **errors}
    if errors:
        form.add_errors(errors)
        return None
    return definition


def _save(form: PeriodicTaskForm, row: PeriodicTask | None) -> PeriodicTask | None:
    definition = _checked(form, row)
    return None if definition is None else service.save(definition, row)


def _preview(form: PeriodicTaskForm, row: PeriodicTask | None):
    """*Preview*: the form again with the next runs of what it says, nothing saved."""
    definition = _checked(form, row) if form.validate_on_submit() else None
    db.session.rollback()
    if definition is None:
        return _form_page(form, row, 400)
    return _form_page(form, row, preview=preview_runs(definition, utcnow(), PREVIEW_RUNS))


@bp.route("/new", methods=["GET", "POST"])
def new():
    form = PeriodicTaskForm()
    form.fill_choices(_task_names(), tuple(current_app.config["JOBS_QUEUES"]))
    if request.method == "POST" and "preview" in request.form:
        return _preview(form, None)
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
    elif "preview" in request.form:
        return _preview(form, row)
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


def _confirm_reset(task_id: int):
    """*Reset to default* asks first (without JavaScript too): what the reset changes, and the button."""
    row = _row_or_404(task_id)
    if row.source != "registry" or not row.default_definition:
        abort(404, f"{row.name} has no default in the code to reset to.")
    current = service.definition_json(service.definition_of(row))
    changes = [(key, current.get(key), value) for key, value in sorted(row.default_definition.items())
               if key not in service.NOT_DEFINITION and current.get(key) != value]
    return render_template("schedules/reset.html", row=row, changes=changes, action_form=ActionForm())


# One rule for both methods: Werkzeug answers 405, not 404, for an out-of-range id on a path whose GET
# and POST are separate rules.
@bp.route("/<int:task_id>/reset", methods=["GET", "POST"])
def reset(task_id: int):
    if request.method == "GET":
        return _confirm_reset(task_id)
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


HISTORY = 200  # attempts shown on a history page, newest first


@dataclass
class Attempt:
    """One line of a task's history: a tick of this schedule, or a run started another way."""

    at: datetime
    status: str
    source: str  # "tick", "manual" (Run now, the CLI, the code) or "<another schedule's name>"
    tick: datetime | None = None
    attempt: int = 1
    run: JobRun | None = None
    reason: str | None = None


def _attempts(row: PeriodicTask) -> list[Attempt]:
    """The schedule's firings and every other run of its task, from two bounded index ranges."""
    firings = db.session.scalars(db.select(ScheduleFiring).where(ScheduleFiring.periodic_task_id == row.id)
                                 .order_by(ScheduleFiring.tick_at.desc()).limit(HISTORY)).all()
    runs = db.session.scalars(db.select(JobRun).where(JobRun.task_name == row.task)
                              .order_by(JobRun.created_at.desc(), JobRun.id.desc()).limit(HISTORY)).all()
    newest: dict[str, JobRun] = {}
    for run in runs:  # newest first: the first row of a job is its latest attempt
        newest.setdefault(run.job_id, run)
    found = [Attempt(at=f.claimed_at, status=f.status, source="tick", tick=f.tick_at, attempt=f.attempt,
                     run=newest.get(f.job_id), reason=f.reason) for f in firings]
    fired = {f.job_id for f in firings}
    own = f"{ENTRY_PREFIX}{row.id}-"
    others = {}  # a firing of another schedule of the same task: say whose
    for job_id in newest:
        if job_id.startswith(ENTRY_PREFIX) and not job_id.startswith(own):
            other = job_id.removeprefix(ENTRY_PREFIX).split("-", 1)[0]
            if other.isdigit():
                others[job_id] = int(other)
    names = dict(db.session.execute(db.select(PeriodicTask.id, PeriodicTask.name)
                                    .where(PeriodicTask.id.in_(set(others.values())))).all()) if others else {}
    for job_id, run in newest.items():
        if job_id in fired or job_id.startswith(own):
            continue  # a tick of this schedule (one older than the firings shown is left out with them)
        source = names.get(others[job_id], "another schedule") if job_id in others else "manual"
        found.append(Attempt(at=run.created_at, status=run.status, source=source, attempt=run.attempt, run=run))
    found.sort(key=lambda a: a.at, reverse=True)
    return found[:HISTORY]


@bp.get("/<int:task_id>/history")
def history(task_id: int):
    row = _row_or_404(task_id)
    now = utcnow()
    last = lastrun.last_run(row)
    week = lastrun.week_stats({row.task}, now - lastrun.WEEK).get(row.task, (0, 0))[0]
    return render_template("schedules/history.html", row=row, attempts=_attempts(row), describe=describe,
                           last=last, week=week, state=state_of(row, now, last))
