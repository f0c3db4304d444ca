"""/admin/backups: the backups, their tiers, verification and copy off the machine; download, back up now,
verify, copy again."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, send_file, url_for
from redis.exceptions import RedisError

from itsm.admin.guard import admin_blueprint
from itsm.backups import service
from itsm.backups.store import NAME, backup_dir, human_size, list_backups, size_mismatch_note
from itsm.web import ActionForm
from jobs import registry
from jobs.connection import unavailable
from jobs.exceptions import JobsError

bp = admin_blueprint("backups", __name__, "/admin/backups")
bp.add_app_template_filter(human_size, "filesize")
bp.add_app_template_filter(size_mismatch_note, "size_mismatch_note")


@bp.get("")
def index():
    backups = list_backups()
    return render_template("admin/backups.html", backups=backups, tiers=service.tiers_of_current(backups),
                           directory=backup_dir(), keep=service.tiers(), action_form=ActionForm(),
                           copy_command=bool(current_app.config.get("BACKUP_COPY_COMMAND")))


def _enqueue(task_name: str, *args) -> str | None:
    if not ActionForm().validate_on_submit():
        abort(400, "The form was missing its security token. Reload the page and try again.")
    try:
        return registry.get(task_name).delay(*args).id
    except RedisError as err:
        flash(f"Could not queue it: {unavailable(err)}", "error")
    except JobsError as err:
        flash(f"Could not queue it: {err}", "error")
    return None


@bp.post("/create")
def create():
    if _enqueue("backup_database"):
        flash("Backup queued: it appears here when the worker has written it, and is then verified.", "success")
    return redirect(url_for("backups.index"))


def _backup_path(name: str):
    if not NAME.match(name):
        abort(404, f"There is no backup {name}.")
    path = backup_dir() / name
    if not path.is_file():
        abort(404, f"There is no backup {name}.")
    return path


@bp.post("/<name>/verify")
def verify(name: str):
    _backup_path(name)
    if _enqueue("verify_backup", name):
        flash(f"Verification of {name} queued: it is restored into a scratch database and its rows counted.",
              "success")
    return redirect(url_for("backups.index"))


@bp.post("/<name>/copy")
def copy(name: str):
    _backup_path(name)
    if _enqueue("copy_backup", name):
        flash(f"Copy of {name} queued: a worker runs BACKUP_COPY_COMMAND for it and records the outcome here.",
              "success")
    return redirect(url_for("backups.index"))


# What the bytes are: a gzip file and pg_dump's own format. Guessing from the name would call a
# .sqlite.gz a SQLite database (``mimetypes`` reads .gz as an encoding, not the type).
MIME_TYPES = {"sqlite.gz": "application/gzip", "pgdump": "application/octet-stream"}


@bp.get("/<name>/download")
def download(name: str):
    path = _backup_path(name)
    return send_file(path, as_attachment=True, download_name=name, mimetype=MIME_TYPES[NAME.match(name).group(2)])
