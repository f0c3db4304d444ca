"""Fault: ``flask backup restore`` while the web server takes writes."""

from __future__ import annotations

import gzip
import http.client
import shutil
import sqlite3
import threading
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from itsm.backups import dbtools, service
from itsm.backups.store import list_backups
from itsm.extensions import db
from itsm.tickets.models import Ticket
from tests import factories
from tests.processes import wait_for
from tests.reliability.conftest import WebServer

WRITERS = 3


def titles_in_backup(path: Path, database_url: str, scratch: Path) -> set[str]:
    """The ticket titles a backup file holds, read back from a real restore of it."""
    if path.name.endswith(".sqlite.gz"):
        copy = scratch / f"{path.name}.db"
        with gzip.open(path, "rb") as src, copy.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        conn = sqlite3.connect(copy)
        try:
            return {row[0] for row in conn.execute("SELECT title FROM tickets")}
        finally:
            conn.close()
    with dbtools.scratch_pg_database(make_url(database_url)) as url:
        dbtools.pg_restore(url, path, clean=False)
        with psycopg.connect(url) as conn:
            return {row[0] for row in conn.execute("SELECT title FROM tickets")}


def live_titles(app) -> set[str]:
    with app.app_context():
        return set(db.session.scalars(sa.select(Ticket.title)))


class Writers:
    """Threads creating tickets through the form as fast as the server answers, each title unique."""

    def __init__(self, web: WebServer, column_id: int) -> None:
        self.web, self.column_id = web, column_id
        self.cookie, self.token = web.login()
        self.confirmed: set[str] = set()  # 302 to the new ticket's page
        self.rejected = 0  # 503 with Retry-After and the maintenance page
        self.other: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._write, args=(n,), daemon=True) for n in range(WRITERS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in self.threads)

    def _write(self, number: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            title = f"write {number}-{n}"
            body = urlencode({"title": title, "priority": "2", "column_id": str(self.column_id),
                              "assignee_id": "0", "csrf_token": self.token})
            conn = http.client.HTTPConnection("127.0.0.1", self.web.port, timeout=60)
            try:
                conn.request("POST", "/tickets/new", body=body, headers={
                    "Content-Type": "application/x-www-form-urlencoded", "Cookie": self.cookie})
                response = conn.getresponse()
                page = response.read().decode(errors="replace")
            except (OSError, http.client.HTTPException) as err:
                with self.lock:
                    self.other.append(f"{title}: {type(err).__name__}: {err}")
                continue
            finally:
                conn.close()
            with self.lock:
                if response.status == 302 and "/tickets/" in (response.headers.get("Location") or ""):
                    self.confirmed.add(title)
                elif response.status == 503 and response.headers.get("Retry-After") and "maintenance" in page:
                    self.rejected += 1
                    self.stop.wait(0.05)
                else:
                    self.other.append(f"{title}: {response.status} {page[:200]}")


def test_no_write_the_app_confirmed_is_lost_by_a_restore(app, procs, redis, tmp_path, database_url):
    """Fault: ``flask backup restore FILE --yes`` (a separate process, as an operator runs it) while three
    clients create tickets through ``gunicorn wsgi:app`` (2 sync workers) as fast as it answers.

    Must survive: every write the app confirmed (a 302 to the new ticket) is either in the safety backup the
    restore took first, or was made after the restore, in the restored database; the others were refused
    with a 503 (Retry-After, the maintenance page). Confirmed but lost: 0. The restored database is the
    backup's content plus those later writes. Nothing else answers (no 500, no dropped connection).
    """
    directory = tmp_path / "backups"
    with app.app_context():
        for n in range(20):
            factories.make_ticket(f"backed up {n}")
        column = factories.column("New").id
    web = WebServer(procs)
    web.wait_ready()
    writers = Writers(web, column)  # logged in before the backup: the restored database keeps their session
    with app.app_context():
        backup = service.create_backup()
    writers.start()
    try:
        wait_for(lambda: len(writers.confirmed) >= 30, timeout=60, message="writes flowing")
        restored = procs.run("backup", "restore", backup.name, "--yes", timeout=180)
        after_restore = len(writers.confirmed)
        wait_for(lambda: len(writers.confirmed) >= after_restore + 30, timeout=60,
                 message="writes confirmed again after the restore")
    finally:
        writers.finish()
    assert restored.returncode == 0, restored.stderr
    assert not writers.other, writers.other[:5]

    [safety] = [b for b in list_backups(directory) if b.name != backup.name]
    in_safety = titles_in_backup(safety.path, database_url, tmp_path)
    live = live_titles(app)
    lost = writers.confirmed - in_safety - live
    print(f"{len(writers.confirmed)} confirmed, {writers.rejected} refused with 503, {len(lost)} lost")
    assert lost == set()
    assert writers.rejected > 0  # the restore did stop writes while it ran
    backed_up = titles_in_backup(backup.path, database_url, tmp_path)
    assert backed_up == {f"backed up {n}" for n in range(20)}
    made_after = writers.confirmed - in_safety
    assert made_after and live == backed_up | made_after  # the backup's content, then what came after
    assert writers.confirmed & in_safety  # writes before the restore are in the safety backup
