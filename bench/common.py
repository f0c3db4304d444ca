"""Helpers shared by the benchmark scripts in bench/: the machine, bench/RESULTS.md, scratch databases,
the Redis database each script owns, percentiles and the ``flask`` / ``rq`` processes they start.

Scripts import it as ``bench.common`` after putting the repository first on ``sys.path``.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import flask_migrate
import psycopg
from flask import Flask
from redis import Redis

from itsm import create_app

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgresql://postgres@127.0.0.1:5432/{name}"
DROPPED_ENV = ("JOBS_EAGER", "LOG_LEVEL", "FLASK_DEBUG", "JOBS_IMPORTS")  # not passed on to the processes


# --- the machine and bench/RESULTS.md ---------------------------------------------------------------------------

def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo."""
    return next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")), "unknown CPU")


def python_version() -> str:
    """This interpreter's version, e.g. ``3.11.2``."""
    return sys.version.split()[0]


def machine() -> str:
    """CPUs (nproc), CPU model, RAM (free -g) and Python version, for a ``- Machine:`` line."""
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    mem = next(line for line in subprocess.run(["free", "-g"], capture_output=True, text=True).stdout.splitlines()
               if line.startswith("Mem:")).split()[1]
    return f"{nproc} CPUs (nproc), {cpu_model()}, {mem} GiB RAM (free -g), Python {python_version()}"


def date_line() -> str:
    """The ``- Date:`` line of a results section: now, in UTC, to the minute."""
    return f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"


def command_line(script: str) -> str:
    """The command that ran ``script`` (e.g. ``bench/desk.py``) with this process's arguments, shell-quoted."""
    return shlex.join([os.path.relpath(sys.executable, ROOT), script, *sys.argv[1:]])


def with_section(text: str, section: str, lines: Sequence[str]) -> str:
    """``text`` with the ``section`` heading and its body (up to the next ``## ``) replaced by ``lines``, at the end."""
    kept = re.sub(re.escape(section) + r"\n.*?(?=^## |\Z)", "", text, flags=re.S | re.M).rstrip()
    return kept + "\n\n" + "\n".join(lines) + "\n"


def section_head(section: str, script: str, machine: str, command_note: str = "") -> list[str]:
    """A results section's heading, ``- Date:``, ``- Machine:`` and ``- Command:`` (that ran ``script``) lines."""
    return [section, "", date_line(), f"- Machine: {machine}", f"- Command: `{command_line(script)}`{command_note}"]


def write_section(section: str, lines: Sequence[str], path: Path = RESULTS) -> None:
    """Replace ``section`` of bench/RESULTS.md (or ``path``) with ``lines``, starting the file if need be."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(with_section(old, section, lines))
    print(f"wrote {os.path.relpath(path, ROOT)}")


# --- figures ------------------------------------------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values`` by nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# --- scratch databases and the app ---------------------------------------------------------------------------------

@contextmanager
def postgres_database() -> Iterator[str]:
    """A new ``itsm_bench_<random>`` PostgreSQL database's URL; dropped WITH (FORCE) afterwards, even on error."""
    name = f"itsm_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_URL.format(name=name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def sqlite_database() -> Iterator[str]:
    """The URL of an SQLite file in a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="itsm-bench-") as tmp:
        yield f"sqlite:///{tmp}/bench.db"


@contextmanager
def scratch_database(kind: str) -> Iterator[str]:
    """An empty database of ``kind`` ("sqlite" or "postgresql") that this script owns, removed afterwards."""
    with sqlite_database() if kind == "sqlite" else postgres_database() as url:
        yield url


def bench_app(url: str, **config: object) -> Flask:
    """The app in testing mode on database ``url``; ``config`` adds to or overrides the settings."""
    return create_app({"ITSM_ENV": "testing", "TESTING": False, "SECRET_KEY": "bench", "SQLALCHEMY_DATABASE_URI": url,
                       **config})


def migrate(app: Flask) -> None:
    """Build the app's schema with the migrations (``flask db upgrade``)."""
    with app.app_context():
        flask_migrate.upgrade()


# --- the Redis database a script owns ------------------------------------------------------------------------------

def redis_client(url: str) -> Redis:
    """A client of the Redis database at ``url``."""
    return Redis.from_url(url)


def flush_redis(url: str) -> None:
    """Empty the one Redis database named by ``url`` (FLUSHDB, never FLUSHALL); refuses database 0."""
    client = redis_client(url)
    if not client.connection_pool.connection_kwargs.get("db"):
        raise ValueError(f"{url}: a benchmark owns a numbered Redis database, not database 0")
    client.flushdb()


@contextmanager
def flushed(url: str) -> Iterator[None]:
    """Empty the Redis database at ``url`` before the block and after it, even on error."""
    try:
        flush_redis(url)
        yield
    finally:
        flush_redis(url)


# --- processes -------------------------------------------------------------------------------------------------

def flask_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a ``flask``/``rq`` process on these databases: ours, minus settings that would skew it."""
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env.update(FLASK_APP="wsgi", ITSM_ENV="testing", SECRET_KEY="bench", DATABASE_URL=database_url,
               REDIS_URL=redis_url, PYTHONPATH=str(ROOT), **extra)
    return env


def spawn(cmd: list[str], env: dict[str, str], out: BinaryIO) -> subprocess.Popen:
    """Start ``cmd`` in the repository in a session of its own, stdout and stderr to the open file ``out``."""
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of ``proc`` (one this script started with :func:`spawn`) and reap it."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextmanager
def running(cmds: list[list[str]], env: dict[str, str], log: Path) -> Iterator[list[subprocess.Popen]]:
    """Start the processes (own sessions), stop them with SIGTERM, SIGKILL their group if stuck."""
    procs: list[subprocess.Popen] = []
    with log.open("ab") as out:
        try:
            for cmd in cmds:
                procs.append(spawn(cmd, env, out))
            yield procs
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    kill_group(proc)


@contextmanager
def log_tail_on_error(log: Path, lines: int = 40) -> Iterator[None]:
    """If the block raises, print the last ``lines`` lines of the processes' ``log`` to stderr first."""
    try:
        yield
    except Exception:
        if log.exists():
            print("".join(log.read_text(errors="replace").splitlines(True)[-lines:]), file=sys.stderr)
        raise
