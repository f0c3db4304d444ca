"""The database side of backups: snapshots, row counts, pg_dump / pg_restore and scratch databases."""

from __future__ import annotations

import contextlib
import gzip
import re
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from sqlalchemy.engine import URL, make_url

from itsm.backups.store import BackupError
from itsm.childproc import dies_with_parent

TABLES_SQL = ("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
              "AND table_type = 'BASE TABLE' ORDER BY table_name")


def libpq_url(url: URL) -> str:
    """The SQLAlchemy URL as a libpq connection URI (what psycopg and pg_dump take)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(url.database)


# --- SQLite ----------------------------------------------------------------------------------------------------

def sqlite_counts(conn: sqlite3.Connection) -> dict[str, int]:
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    return {name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names}  # noqa: S608


def sqlite_snapshot(source: Path, target: Path) -> dict[str, int]:
    """Copy the live database with SQLite's online backup API (consistent while the app writes);
    returns the copy's row counts."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)  # all pages in one step, under one read transaction
        return sqlite_counts(dst)
    finally:
        dst.close()
        src.close()


def gunzip_to(path: Path, target: Path) -> None:
    try:
        with gzip.open(path, "rb") as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (OSError, EOFError) as err:
        raise BackupError(f"{path.name} is not a readable compressed SQLite backup: {err}") from None


def sqlite_restore(backup_db: Path, live: Path) -> None:
    """Replace the live database's content with the backup's, through the backup API (so open WAL
    readers see either the old or the new database, never a half-copied file)."""
    src = sqlite3.connect(backup_db)
    dst = sqlite3.connect(live, timeout=30)
    try:
        if src.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise BackupError("the backup's SQLite file fails its integrity check")
        src.backup(dst)
    except sqlite3.DatabaseError as err:
        raise BackupError(f"the backup is not a usable SQLite database: {err}") from None
    finally:
        dst.close()
        src.close()


# --- PostgreSQL ------------------------------------------------------------------------------------------------

def pg_counts(conn: psycopg.Connection) -> dict[str, int]:
    names = [r[0] for r in conn.execute(TABLES_SQL)]
    return {name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names}  # noqa: S608


def run(args: list[str]) -> subprocess.CompletedProcess:
    """Run a PostgreSQL client tool to the end, bound to this process's life: the thread that starts it
    waits here for as long as it runs, so the tool gets SIGKILL exactly when the job's process dies, however
    it ends (a SIGKILLed worker, a hard time limit), and is never left running next to the job's retry."""
    return subprocess.run(args, capture_output=True, text=True, check=False, preexec_fn=dies_with_parent())


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} was not found on PATH; install the PostgreSQL client tools "
                          "(Debian: apt-get install postgresql-client)")
    return path


def _major(tool: str) -> int:
    out = run([tool, "--version"]).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    if not match:
        raise BackupError(f"cannot tell the version of {tool} from {out.strip()!r}")
    return int(match.group(1))


def check_client(tool_name: str, conn: psycopg.Connection) -> str:
    """The tool's path, after checking it is not older than the server (pg_dump refuses newer servers)."""
    tool = _tool(tool_name)
    server = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
    client = _major(tool)
    if client < server:
        raise BackupError(f"{tool_name} is version {client} but the server is PostgreSQL {server}: install "
                          f"the version {server} client tools (an older {tool_name} cannot read a newer server)")
    return tool


@contextlib.contextmanager
def pg_snapshot(url: str) -> Iterator[tuple[psycopg.Connection, str]]:
    """A repeatable-read transaction and its exported snapshot id: pg_dump run with ``--snapshot``
    dumps exactly what this transaction sees, so the manifest's counts match the dump."""
    with psycopg.connect(url) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        yield conn, snapshot
        conn.rollback()


def pg_dump(url: str, conn: psycopg.Connection, snapshot: str, target: Path) -> None:
    tool = check_client("pg_dump", conn)
    result = run([tool, "--format=custom", "--compress=6", f"--snapshot={snapshot}", f"--file={target}",
                  f"--dbname={url}"])
    if result.returncode != 0:
        raise BackupError(f"pg_dump failed: {_last_line(result.stderr)}")


def pg_restore(url: str, path: Path, *, clean: bool) -> None:
    with psycopg.connect(url) as conn:
        tool = check_client("pg_restore", conn)
    args = [tool, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction", f"--dbname={url}"]
    if clean:
        args += ["--clean", "--if-exists"]
    result = run([*args, str(path)])
    if result.returncode != 0:
        raise BackupError(f"pg_restore failed: {_last_line(result.stderr)}")


def pg_list(path: Path) -> None:
    """Fail unless ``path`` is a pg_dump custom-format archive pg_restore can read."""
    result = run([_tool("pg_restore"), "--list", str(path)])
    if result.returncode != 0:
        raise BackupError(f"{path.name} is not a readable pg_dump archive: {_last_line(result.stderr)}")


@contextlib.contextmanager
def scratch_pg_database(url: URL) -> Iterator[str]:
    """A new, empty database on the same server, dropped afterwards whatever happens."""
    name = f"itsm_verify_{uuid.uuid4().hex[:12]}"
    admin = libpq_url(url.set(database="postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield libpq_url(url.set(database=name))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"


def url_of(raw: str) -> URL:
    return make_url(raw)
