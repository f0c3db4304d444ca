"""``flask worker`` and ``flask jobs ...``."""

from __future__ import annotations

import json
import logging
from datetime import datetime

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import with_appcontext
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.job import Job
from rq.registry import FailedJobRegistry
from sqlalchemy.exc import SQLAlchemyError

from itsm.cliparams import Command, FiniteFloatRange, Group
from itsm.extensions import db, redis_client
from jobs import audit, hooks, liveness, logctx, registry
from jobs.connection import ping, queue_names, unavailable
from jobs.exceptions import JobsError
from jobs.models import JobRun
from jobs.runtime import ATTEMPT_FIELD, RETRY_BASE_FIELD
from jobs.task import MAX_DELAY
from jobs.worker import Supervisor


def _queues_option(value: str) -> list[str]:
    names = [q.strip() for q in value.split(",") if q.strip()]
    unknown = [q for q in names if q not in queue_names()]
    if not names or unknown:
        raise click.BadParameter(f"unknown queue(s) {', '.join(unknown) or value!r}; "
                                 f"choose from {', '.join(queue_names())}")
    return names


def require_redis() -> None:
    """A command that needs Redis stops with one line when it does not answer."""
    try:
        ping()
    except JobsError as err:
        raise click.ClickException(str(err)) from None


def require_database(migrated: bool = True) -> None:
    """A worker or scheduler stops with one line when the database does not answer, or (``migrated``) has
    no tables yet: otherwise each job and each scheduler pass would fail on its own, with nothing saying why."""
    url = db.engine.url.render_as_string(hide_password=True)
    try:
        with db.engine.connect() as conn:
            found = sa.inspect(conn).has_table(JobRun.__tablename__)
    except SQLAlchemyError as err:
        reason = " ".join(str(getattr(err, "orig", None) or err).split())  # drivers' messages span lines
        raise click.ClickException(f"the database at {url} is unreachable ({reason})") from None
    finally:
        db.engine.dispose()  # the worker forks its processes next; none of them may share this connection
    if migrated and not found:
        raise click.ClickException(f"the database at {url} has no tables yet: run `flask db upgrade` first")


@click.command("worker", cls=Command)
@click.option("--queues", "-q", default="high,default,low", show_default=True,
              help="Queues in priority order, comma-separated.")
@click.option("--concurrency", "-c", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Worker processes.")
@click.option("--burst", is_flag=True, help="Work until the queues are empty, then exit.")
@click.option("--max-jobs", type=click.IntRange(1, 1_000_000_000),
              help="Restart a worker process after this many jobs.")
@click.option("--loglevel", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              default=None, help="Log level (default: LOG_LEVEL, else WARNING in production).")
@click.option("--purge", is_flag=True, help="Empty the named queues first (asks for confirmation).")
@click.option("--with-scheduler", is_flag=True, help="Also run the periodic-job scheduler (one-machine deploys).")
@with_appcontext
def worker_command(queues, concurrency, burst, max_jobs, loglevel, purge, with_scheduler) -> None:
    """Run RQ workers for the app's background jobs."""
    app = current_app._get_current_object()
    names = _queues_option(queues)
    level = (loglevel or app.config["JOBS_LOG_LEVEL"]).upper()
    logctx.install(getattr(logging, level, logging.INFO))
    require_redis()
    require_database()
    if purge:
        counts = {name: Queue(name, connection=redis_client()).count for name in names}
        click.confirm(f"Delete every waiting job in {', '.join(f'{n} ({c})' for n, c in counts.items())}?",
                      abort=True, err=True)
        purged = []
        for name in names:
            queue = Queue(name, connection=redis_client())
            purged += queue.get_job_ids()
            queue.empty()
        audit.record_purged(purged)  # or the lost-job pass would enqueue them again
        click.echo(f"Purged {sum(counts.values())} job(s).", err=True)
    extra = {}
    if with_scheduler:
        if hooks.scheduler is None:
            raise click.ClickException("--with-scheduler: this app registers no scheduler")
        extra["scheduler"] = hooks.scheduler
    redis_client().close()  # the children open their own connections
    raise SystemExit(Supervisor(app, names, concurrency, burst, max_jobs, level, extra).run())


jobs_cli = Group("jobs", help="Background jobs: workers, queues, failures.")


@jobs_cli.command("ping")
def jobs_ping() -> None:
    """Live workers and scheduler with heartbeat age; exit 1 when none."""
    require_redis()
    conn = redis_client()
    live_workers = 0
    for w in liveness.workers(conn):
        live_workers += w.alive
        click.echo(f"worker    {w.name:40} {w.state:10} heartbeat {w.heartbeat_age:6.1f}s ago"
                   f"{'' if w.alive else '  (stale)'}  queues {','.join(w.queues)}")
    scheduler_age = liveness.scheduler_age(conn)
    named = liveness.schedulers(conn)
    for s in named:  # each one by name (its machine), a standby included
        click.echo(f"scheduler {s.name:40} heartbeat {s.heartbeat_age:6.1f}s ago{'' if s.alive else '  (stale)'}")
    if scheduler_age is not None and not named:  # a scheduler of an earlier version beats without its name
        click.echo(f"scheduler heartbeat {scheduler_age:.1f}s ago")
    scheduler_alive = liveness.scheduler_alive(scheduler_age)
    if not live_workers:
        click.echo("no live worker", err=True)
    if not scheduler_alive:
        click.echo("no live scheduler", err=True)
    if not live_workers or not scheduler_alive:
        raise SystemExit(1)


@jobs_cli.command("status")
def jobs_status() -> None:
    """Queue depths, started, failed and scheduled counts."""
    require_redis()
    conn = redis_client()
    click.echo(f"{'queue':10} {'queued':>8} {'started':>8} {'scheduled':>10} {'failed':>8}")
    for q in liveness.queues(conn):
        click.echo(f"{q.name:10} {q.queued:8d} {q.started:8d} {q.scheduled:10d} {q.failed:8d}")
    click.echo(f"workers: {Worker.count(connection=conn)}")


@jobs_cli.command("requeue-failed")
@click.option("--queue", "queue_name", help="Only this queue (default: all).")
def jobs_requeue_failed(queue_name: str | None) -> None:
    """Requeue failed jobs; each gets its full retries again."""
    names = _queues_option(queue_name) if queue_name else list(queue_names())
    require_redis()
    conn = redis_client()
    total = 0
    try:
        for name in names:
            failed = FailedJobRegistry(queue=Queue(name, connection=conn))
            for job_id in failed.get_job_ids():
                key = Job.key_for(job_id)
                conn.hset(key, RETRY_BASE_FIELD, int(conn.hget(key, ATTEMPT_FIELD) or 0))
                failed.requeue(job_id)
                total += 1
    except RedisError as err:
        raise click.ClickException(str(unavailable(err))) from None
    click.echo(f"Requeued {total} failed job(s).")


@jobs_cli.command("enqueue")
@click.argument("task_name")
@click.option("--args", "args_json", default="[]", help="JSON list of positional arguments.")
@click.option("--kwargs", "kwargs_json", default="{}", help="JSON object of keyword arguments.")
@click.option("--queue", "queue_name", help="Queue (default: the task's).")
@click.option("--countdown", type=FiniteFloatRange(0, MAX_DELAY.total_seconds()),
              help="Seconds to wait before running (at most 10 years).")
@click.option("--eta", help="When to run, ISO 8601 with a time zone (a past time runs now; at most 10 years ahead).")
def jobs_enqueue(task_name, args_json, kwargs_json, queue_name, countdown, eta) -> None:
    """Enqueue a task by name."""
    try:
        task = registry.get(task_name)
        args, kwargs = json.loads(args_json), json.loads(kwargs_json)
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValueError("--args must be a JSON list and --kwargs a JSON object")
        when = datetime.fromisoformat(eta) if eta else None
        if queue_name:
            _queues_option(queue_name)
        handle = task.apply_async(args, kwargs, countdown=countdown, eta=when, queue=queue_name)
    except (JobsError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    when_text = f" for {handle.scheduled_for.isoformat()}" if handle.scheduled_for else ""
    click.echo(f"Enqueued {handle.task} as {handle.id} on {handle.queue}{when_text}.")
