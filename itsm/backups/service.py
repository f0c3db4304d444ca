"""Create, verify and restore backups. Every failure is a BackupError with a one-line reason,
and never leaves a partial file behind or touches earlier backups."""

from __future__ import annotations

import errno
import gzip
import os
import shutil
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import psycopg
from alembic.script import ScriptDirectory
from flask import current_app
from flask_migrate import upgrade

from itsm import maintenance
from itsm.attachments import integrity
from itsm.auth import sessions
from itsm.backups import dbtools, partials
from itsm.backups.retention import Tiers, tiers_of
from itsm.backups.store import (
    FORMAT_VERSION,
    Backup,
    BackupError,
    RestoreIncomplete,
    backup_dir,
    created_at_of,
    list_backups,
    new_name,
    read_manifest,
    sha256_of,
    write_manifest,
)
from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.version import __version__


def _kind() -> str:
    name = db.engine.dialect.name
    if name not in ("sqlite", "postgresql"):
        raise BackupError(f"backups of {name} databases are not supported")
    return name


def _ensure_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BackupError(f"cannot create the backup directory {directory}: {err.strerror}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise BackupError(f"the backup directory {directory} is not writable")


def _io_error(err: OSError, what: str) -> BackupError:
    if err.errno == errno.ENOSPC:
        return BackupError(f"the disk is full while {what}; the partial backup was removed")
    return BackupError(f"{what} failed: {err.strerror or err}")


def _migration_of(connection) -> str | None:
    try:
        return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    except Exception:  # noqa: BLE001 -- a database without migrations has no version
        return None


def create_backup(now: datetime | None = None) -> Backup:
    """Back the configured database up into BACKUP_DIR: dump, compress, manifest."""
    now = now or utcnow()
    kind = _kind()
    directory = backup_dir()
    _ensure_dir(directory)
    partials.remove_stale(directory)  # what a killed backup left (never the file of one running now)
    final = directory / new_name(kind, now)
    while final.exists() or final.with_name(final.name + ".partial").exists():
        now += timedelta(seconds=1)  # names are to the second; two backups in one second get the next one
        final = directory / new_name(kind, now)
    partial = final.with_name(final.name + partials.PARTIAL_SUFFIX)
    url = db.engine.url
    try:
        # Locked while it is written: the stale-file cleanup of another backup or prune leaves it alone.
        with partials.writing(partial) as fd:
            with db.engine.connect() as conn:
                migration = _migration_of(conn)
            if kind == "sqlite":
                counts, files = _sqlite_dump(dbtools.sqlite_path(url), partial, directory)
            else:
                libpq = dbtools.libpq_url(url)
                with dbtools.pg_snapshot(libpq) as (conn, snapshot):
                    counts, files = dbtools.pg_counts(conn), integrity.stats(conn)
                    dbtools.pg_dump(libpq, conn, snapshot, partial)
            os.fsync(fd)
            os.replace(partial, final)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise _io_error(err, f"writing {final.name}") from None
    except (BackupError, psycopg.Error, sqlite3.Error) as err:
        partial.unlink(missing_ok=True)
        raise err if isinstance(err, BackupError) else BackupError(f"backup failed: {err}") from None
    manifest = {
        "format": FORMAT_VERSION, "file": final.name, "database": kind, "created_at": now.isoformat(),
        "sha256": sha256_of(final), "size": final.stat().st_size, "tables": counts, "attachments": files,
        "app_version": __version__,
        "migration": migration, "verified": None, "verified_at": None, "verify_message": None,
    }
    try:
        write_manifest(final, manifest)
    except OSError as err:
        final.unlink(missing_ok=True)
        raise _io_error(err, f"writing the manifest of {final.name}") from None
    return Backup(path=final, created_at=created_at_of(final.name), manifest=manifest)


def _sqlite_dump(source: Path, partial: Path, directory: Path) -> tuple[dict[str, int], dict[str, int]]:
    with partials.scratch_dir(directory) as tmp:
        copy = tmp / "snapshot.db"
        counts = dbtools.sqlite_snapshot(source, copy)
        conn = sqlite3.connect(copy)
        try:
            files = integrity.stats(conn)
        finally:
            conn.close()
        with copy.open("rb") as src, gzip.open(partial, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return counts, files


def _check_file(path: Path) -> dict:
    manifest = read_manifest(path)
    size = path.stat().st_size
    if size != manifest.get("size"):
        raise BackupError(f"{path.name} is {size} bytes but its manifest says {manifest.get('size')}: "
                          "the file is truncated or was changed")
    if sha256_of(path) != manifest["sha256"]:
        raise BackupError(f"{path.name} does not match its manifest's sha256: the file is corrupt")
    return manifest


def verify_backup(path: Path) -> dict:
    """Checksum, then restore into a scratch database and compare its row counts with the manifest.
    The outcome is stored in the manifest either way; raises BackupError when verification fails."""
    try:
        manifest = _check_file(path)
        counts, files = _restored_counts(path, manifest)
        expected = manifest.get("tables", {})
        wrong = sorted(t for t in set(expected) | set(counts) if expected.get(t) != counts.get(t))
        if wrong:
            detail = ", ".join(f"{t}: {counts.get(t)} restored, {expected.get(t)} expected" for t in wrong[:5])
            raise BackupError(f"{path.name} restores with different row counts ({detail})")
        if files:
            raise BackupError(f"{path.name} restores with damaged attachments: {'; '.join(files)}")
    except BackupError as err:
        _record(path, False, str(err))
        raise
    stored = manifest.get("attachments") or {}
    also = (f"; {stored['count']} attachments reassemble to their SHA-256" if stored.get("count") else "")
    _record(path, True, f"restored {sum(counts.values())} rows in {len(counts)} tables; counts match{also}")
    return read_manifest(path)


def _restored_counts(path: Path, manifest: dict) -> tuple[dict[str, int], list[str]]:
    """The restored copy's row counts, and what is wrong with its attachments' stored bytes."""
    if manifest.get("database") == "sqlite":
        with partials.scratch_dir(path.parent) as tmp:
            target = tmp / "verify.db"
            dbtools.gunzip_to(path, target)
            try:
                conn = sqlite3.connect(target)
                try:
                    if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                        raise BackupError(f"{path.name} restores to a SQLite file that fails its integrity check")
                    return dbtools.sqlite_counts(conn), integrity.problems(conn, "?")
                finally:
                    conn.close()
            except sqlite3.DatabaseError as err:
                raise BackupError(f"{path.name} is not a usable SQLite backup: {err}") from None
    if manifest.get("database") == "postgresql":
        dbtools.pg_list(path)
        server = db.engine.url if db.engine.dialect.name == "postgresql" else None
        if server is None:
            raise BackupError("verifying a PostgreSQL backup needs a PostgreSQL server: set DATABASE_URL to one")
        with dbtools.scratch_pg_database(server) as scratch:
            dbtools.pg_restore(scratch, path, clean=False)
            with psycopg.connect(scratch) as conn:
                return dbtools.pg_counts(conn), integrity.problems(conn, "%s")
    raise BackupError(f"{path.name}: unknown database kind {manifest.get('database')!r} in its manifest")


def _record(path: Path, ok: bool, message: str) -> None:
    try:
        manifest = read_manifest(path)
    except BackupError:
        return  # nothing to record the outcome in
    manifest.update(verified=ok, verified_at=utcnow().isoformat(), verify_message=message)
    write_manifest(path, manifest)


def _known_revision(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except Exception:  # noqa: BLE001 -- alembic raises one of several errors for an unknown revision
        return False


def _head_revision() -> str | None:
    script = ScriptDirectory.from_config(current_app.extensions["migrate"].migrate.get_config())
    return script.get_current_head()


def check_restorable(path: Path, force: bool = False) -> dict:
    """The backup's manifest, once it is known to be restorable here: intact, of this database kind, not from
    a newer migration than this code knows, and not failed at its last verification (unless ``force``)."""
    manifest = _check_file(path)
    kind = _kind()
    if manifest.get("database") != kind:
        raise BackupError(f"{path.name} is a {manifest.get('database')} backup; the configured database is {kind}")
    script = ScriptDirectory.from_config(current_app.extensions["migrate"].migrate.get_config())
    revision = manifest.get("migration")
    if revision and not _known_revision(script, revision):
        raise BackupError(f"{path.name} comes from a newer version of itsm (migration {revision} is unknown "
                          "here): upgrade itsm first")
    if manifest.get("verified") is False and not force:
        reason = manifest.get("verify_message") or "no reason recorded"
        raise BackupError(f"{path.name} failed its verification ({reason}); verify it again or restore it anyway "
                          "with --force")
    return manifest


def restore_backup(path: Path, force: bool = False) -> Backup:
    """Replace the configured database with the backup, after a safety backup of what is there now.
    Refuses what ``check_restorable`` refuses."""
    manifest = check_restorable(path, force)
    kind = _kind()
    revision = manifest.get("migration")
    logins = sessions.live_ids()
    safety = create_backup()
    db.session.remove()
    db.engine.dispose()
    replacing = False
    try:
        if kind == "sqlite":
            live = dbtools.sqlite_path(db.engine.url)
            with partials.scratch_dir(path.parent) as tmp:
                copy = tmp / "restore.db"
                dbtools.gunzip_to(path, copy)
                dbtools.sqlite_restore(copy, live)  # one transaction: whole, or the database unchanged
                replacing = True
        else:
            replacing = True  # pg_restore --clean drops and creates table by table
            dbtools.pg_restore(dbtools.libpq_url(db.engine.url), path, clean=True)
        db.engine.dispose()
        if revision != _head_revision():
            upgrade()  # an older backup is brought up to this code's schema
        maintenance.rewrite_durable_copy()  # the backup's copy of the flag replaced ours
        sessions.end_all_but(logins)
        db.session.commit()
    except Exception as err:  # noqa: BLE001 -- whatever broke once replacing began, the database may be half done
        db.session.rollback()
        if not replacing:
            raise
        raise RestoreIncomplete(
            f"the restore of {path.name} failed after it began replacing the database ({err}); it may be "
            f"partly restored. Restore {path.name} again, or the safety backup {safety.name}") from err
    return safety


def tiers() -> Tiers:
    config = current_app.config
    return Tiers(daily=config["BACKUP_KEEP_DAILY"], weekly=config["BACKUP_KEEP_WEEKLY"],
                 monthly=config["BACKUP_KEEP_MONTHLY"])


class Pruned(NamedTuple):
    kept: list[Backup]
    deleted: list[Backup]
    stale: list[Path]  # partial files and scratch directories that killed backups left


def prune(now: datetime | None = None, dry_run: bool = False) -> Pruned:
    """Apply the retention tiers (a backup and its manifest go together) and remove what killed backups left
    behind (never the partial file of a backup running right now)."""
    stale = partials.remove_stale(backup_dir(), dry_run=dry_run)
    backups = list_backups()
    keep = tiers_of_current(backups, now)
    kept = [b for b in backups if b.name in keep]
    doomed = [b for b in backups if b.name not in keep]
    if not dry_run:
        for backup in doomed:
            backup.path.unlink(missing_ok=True)
            backup.manifest_path.unlink(missing_ok=True)
    return Pruned(kept, doomed, stale)


def tiers_of_current(backups: list[Backup], now: datetime | None = None) -> dict[str, str]:
    return tiers_of(((b.name, b.created_at, bool(b.verified)) for b in backups), now or utcnow(), tiers())
