"""The app factory: configuration, extensions, the job runtime's hooks, blueprints, commands."""

from __future__ import annotations

import logging
import os
import pkgutil

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from itsm import (
    cli,
    errors,
    models,  # noqa: F401  (every table known to SQLAlchemy and Alembic)
    rq_admin,
    templating,
)
from itsm.admin.routes import bp as admin_bp
from itsm.attachments.routes import bp as attachments_bp
from itsm.auth import sessions
from itsm.auth.account import bp as account_bp
from itsm.auth.routes import bp as auth_bp
from itsm.automation.routes import bp as automation_bp
from itsm.backups.routes import bp as backups_bp
from itsm.board.routes import bp as board_bp
from itsm.cliparams import AppCommands
from itsm.config import ConfigError, ensure_secret_key, load_config, normalize_database_url
from itsm.converters import DatabaseInteger
from itsm.db_setup import configure_engine
from itsm.extensions import csrf, db, login_manager, mail, migrate
from itsm.health import bp as health_bp
from itsm.housekeeping.routes import bp as settings_bp
from itsm.inbound.routes import bp as mailboxes_bp
from itsm.mail import notify, outbox, sending
from itsm.mail.routes import bp as outbox_bp
from itsm.mail.unsubscribe import bp as unsubscribe_bp
from itsm.maintenance import web as maintenance_web
from itsm.maintenance.inflight import JobsPause
from itsm.recurring.holidays import bp as holidays_bp
from itsm.recurring.routes import bp as recurring_bp
from itsm.schedules import firing, scheduler
from itsm.schedules.routes import bp as schedules_bp
from itsm.tickets.routes import bp as tickets_bp
from itsm.users.profile import bp as profile_bp
from itsm.web import UploadRequest
from jobs import hooks, logctx, registry, runtime


def create_app(overrides: dict | None = None) -> Flask:
    """Build the app from the environment; ``overrides`` wins over it (tests)."""
    app = Flask(
        "itsm",
        instance_relative_config=True,
        template_folder="../templates",
        static_folder="../static",
    )
    app.request_class = UploadRequest
    app.cli = AppCommands()  # before anything adds a command to it (Flask-Migrate's `db` too)
    # The default SQLite file, the development secret and the mail sink live here; a fresh checkout
    # has no instance/ yet (SQLite cannot create a file in a missing folder).
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(load_config(app.instance_path))
    if overrides:
        app.config.update(overrides)
    app.config["SQLALCHEMY_DATABASE_URI"] = normalize_database_url(app.config["SQLALCHEMY_DATABASE_URI"])
    ensure_secret_key(app.config, app.instance_path)
    trust_proxies(app)

    register_logger(app)
    register_maintenance(app)
    register_extensions(app)
    register_jobs(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_template_helpers(app)
    register_commands(app)
    return app


def trust_proxies(app: Flask) -> None:
    """Behind PROXY_HOPS reverse proxies, take the client's address, scheme and host from their
    X-Forwarded-* headers; with none (the default) those headers are ignored, since anyone can send them."""
    hops = app.config.get("PROXY_HOPS") or 0
    if hops < 0:
        raise ConfigError(f"PROXY_HOPS must be 0 or more, got {hops}")
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)


def register_logger(app: Flask) -> None:
    level = getattr(logging, app.config["LOG_LEVEL"], logging.INFO)
    # Our loggers speak at LOG_LEVEL; third-party libraries only when something is wrong.
    logging.getLogger("itsm").setLevel(level)
    logging.getLogger("jobs").setLevel(getattr(logging, app.config["JOBS_LOG_LEVEL"], logging.INFO))
    if not logging.getLogger().handlers:
        # One line per event, in the workers' format: a job run inline (or from a web request) names itself.
        root = logging.getLogger()
        root.addHandler(logctx.handler())
        root.setLevel(logging.WARNING)


def register_maintenance(app: Flask) -> None:
    maintenance_web.register(app)


def register_extensions(app: Flask) -> None:
    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"))
    mail.init_app(app)
    outbox.register()
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to continue."
    login_manager.login_message_category = "info"
    sessions.register(app, login_manager)
    configure_engine(app)


def task_modules() -> tuple[str, ...]:
    """Every feature's jobs: the ``tasks`` module of each package in ``itsm/`` (adding one is enough)."""
    here = os.path.dirname(__file__)
    return tuple(f"itsm.{found.name}.tasks" for found in pkgutil.iter_modules([here])
                 if found.ispkg and os.path.exists(os.path.join(here, found.name, "tasks.py")))


def register_jobs(app: Flask) -> None:
    """The task modules, loaded once, and the hooks through which the job runtime (which imports no
    feature) calls into the features."""
    registry.load((*task_modules(), *app.config["JOBS_IMPORTS"]))
    runtime.on_final_failure(notify.system_failure)
    hooks.register(attempt_claims=firing.AttemptClaims, maintenance=JobsPause,
                   on_worker_start=sending.keep_connections, run_scheduler=scheduler.run_forked)


def register_blueprints(app: Flask) -> None:
    # Before any route exists: every <int:...> of every blueprint, rq-dashboard's too, is bounded by it.
    app.url_map.converters["int"] = DatabaseInteger
    for bp in (auth_bp, health_bp, tickets_bp, attachments_bp, recurring_bp, board_bp, admin_bp, automation_bp,
               schedules_bp, holidays_bp, mailboxes_bp, settings_bp, backups_bp, outbox_bp, unsubscribe_bp,
               profile_bp,
               account_bp):
        app.register_blueprint(bp)
    rq_admin.register(app)


def register_errorhandlers(app: Flask) -> None:
    errors.register(app)


def register_template_helpers(app: Flask) -> None:
    templating.register(app)


def register_commands(app: Flask) -> None:
    cli.register(app)
