"""Fault: the worker is SIGKILLed while ``backup_database`` runs pg_dump; partial files left by killed backups."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from itsm.backups.store import list_backups
from itsm.backups.tasks import backup_database
from tests.processes import wait_for
from tests.reliability.conftest import final_runs, require_postgresql


def processes_running(text: str) -> list[int]:
    """Pids of this machine's processes whose command line contains ``text`` (zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if text in cmdline and "zombie" not in state:
            found.append(int(entry.name))
    return found


def parent_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("PPid:")).split()[1])


def leftovers(directory: Path) -> list[str]:
    """What a backup must never leave behind: partial files and scratch directories."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".partial") or p.is_dir())


@pytest.fixture
def held_dump(database_url):
    """A table pg_dump must lock, in its own schema (so the manifest's counts of ``public`` never wait for
    it), locked ACCESS EXCLUSIVE by an open transaction: every pg_dump waits, mid-way, until ``release``."""
    require_postgresql(database_url, "pg_dump is PostgreSQL's")
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS held_for_dump"))
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS held_for_dump.rows (id int)"))
    holder = engine.connect()
    holder.execute(sa.text("LOCK TABLE held_for_dump.rows IN ACCESS EXCLUSIVE MODE"))

    class Held:
        @staticmethod
        def release() -> None:
            if holder.in_transaction():
                holder.rollback()

    yield Held
    Held.release()
    holder.close()
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA held_for_dump CASCADE"))
    engine.dispose()


def test_a_worker_killed_mid_pg_dump_leaves_no_pg_dump_running_and_no_partial_file(app, procs, redis, held_dump,
                                                                                    tmp_path):
    """Fault: SIGKILL of the worker process running ``backup_database`` while its pg_dump is mid-way (the
    file created, the dump waiting on a lock), the supervisor left to start a new worker process.

    Must survive: the pg_dump dies with the worker (none is left running next to the retry); the retry
    removes the killed attempt's partial file; ``flask backup prune`` run while the retry's dump is under way
    leaves the retry's partial alone; once the retry has finished, the backup directory holds the backup and
    its manifest only.
    """
    directory = tmp_path / "backups"
    procs.worker()
    with app.app_context():
        handle = backup_database.delay()
    dump = f"--file={directory}"
    [first] = wait_for(lambda: processes_running(dump), timeout=60, message="pg_dump of the first attempt")
    [killed_partial] = wait_for(lambda: list(directory.glob("*.partial")), timeout=10, message="the partial file")
    worker_process = parent_of(first)
    os.kill(worker_process, signal.SIGKILL)

    wait_for(lambda: first not in processes_running(dump), timeout=10,
             message=f"the killed worker's pg_dump (pid {first}) to end with it")
    # The job is seen as abandoned and runs again (late acknowledgement): its dump waits on the lock too.
    wait_for(lambda: [p for p in directory.glob("*.partial") if p != killed_partial] and processes_running(dump),
             timeout=60, message="the retry's pg_dump")
    [running_partial] = [p for p in directory.glob("*.partial") if p != killed_partial]
    assert not killed_partial.exists()  # the retry, the next backup, removed what the killed attempt left
    pruned = procs.run("backup", "prune", BACKUP_DIR=str(directory))
    assert pruned.returncode == 0, pruned.stderr
    assert running_partial.name not in pruned.stdout and running_partial.exists()  # a running backup's file stays

    held_dump.release()
    rows = final_runs(app, handle.id, 2, timeout=90)
    assert [(r.attempt, r.status) for r in rows] == [(1, "lost"), (2, "succeeded")]
    [backup] = wait_for(lambda: [b for b in list_backups(directory) if b.verified is not None], timeout=60,
                        message="the retry's backup, verified")
    assert backup.verified is True, backup.manifest["verify_message"]
    assert sorted(p.name for p in directory.iterdir()) == [backup.name, backup.name + ".json"]
    assert processes_running(dump) == []


HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(120)
"""


def test_stale_partials_go_with_the_next_backup_and_prune_but_a_running_ones_stays(app, procs, redis, tmp_path,
                                                                                   database_url):
    """What a killed backup leaves (its partial file, the scratch directory of a SQLite snapshot) is removed
    by the next backup and by prune; the partial of a backup being written right now by another process (it
    holds the file's lock, as every backup does) is not."""
    directory = tmp_path / "backups"
    directory.mkdir()
    suffix = "pgdump" if database_url.startswith("postgresql") else "sqlite.gz"
    stale = directory / f"itsm-20260101T030000Z.{suffix}.partial"
    stale.write_bytes(b"half a dump")
    scratch = directory / "itsm-backup-k1lled"
    scratch.mkdir()
    (scratch / "snapshot.db").write_bytes(b"half a snapshot")
    running = directory / f"itsm-20260102T030000Z.{suffix}.partial"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(running)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        dry = procs.run("backup", "prune", "--dry-run", BACKUP_DIR=str(directory))
        assert dry.returncode == 0 and stale.name in dry.stdout and stale.exists()
        created = procs.run("backup", "create", BACKUP_DIR=str(directory))
        assert created.returncode == 0, created.stderr
        assert not stale.exists() and not scratch.exists() and running.exists()

        stale.write_bytes(b"another killed one")
        pruned = procs.run("backup", "prune", BACKUP_DIR=str(directory))
        assert pruned.returncode == 0, pruned.stderr
        assert stale.name in pruned.stdout and not stale.exists() and running.exists()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    pruned = procs.run("backup", "prune", BACKUP_DIR=str(directory))
    assert pruned.returncode == 0 and not running.exists()  # its writer is gone: now it is stale
    assert leftovers(directory) == []
