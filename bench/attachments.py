"""Attachments benchmark: uploads and downloads through gunicorn, the worker's memory while it streams, and
backups of a database holding gigabytes of files, all on PostgreSQL.

A throwaway PostgreSQL database (dropped at the end) and a Redis database of its own (``--redis-url``, default
redis://127.0.0.1:6379/10, flushed before and after). gunicorn runs with the Procfile's command line (2 sync
workers) but the WSGI module bench/attachments_wsgi.py: wsgi.py's app with its /static/ route pointed at a
temporary folder. Logged in through the login form as a seeded admin, the CSRF token read from the ticket
page, it

1. uploads 1 MiB and 20 MiB files of random bytes through the comment form (``POST /tickets/<id>/comments``,
   multipart; a new file each run, so every upload writes its blob), downloads each from
   ``GET /tickets/<id>/attachments/<aid>``, and downloads a copy of the same file from ``/static/``
   (Flask's send_file, which gunicorn sends with sendfile(2)): the baseline. Target: download at least
   0.5x static, for both sizes. For reference, in the same runs: the download with the store's former
   text-bytea read (``X-Bench-Read: text``) and the static copy from a second gunicorn started with
   ``--no-sendfile`` (the bytes copied through Python).
2. resets the peak RSS of each gunicorn worker (not the master: /proc/<pid>/clear_refs), streams
   ``--rss-mb`` MiB of 20 MiB downloads and reads VmHWM: the growth above the RSS before. Target: under 50 MiB.
3. stops gunicorn, inserts ``--attachments-gb`` GiB of blobs with an attachment row each (one 1 MiB urandom
   buffer, each chunk's first bytes varied: every chunk and SHA-256 differs and nothing compresses), then
   times ``flask backup create`` and ``flask backup verify FILE`` (which restores the dump and reassembles
   and hashes every blob) against a bare ``pg_dump -Fc --compress=6`` of the same database.

Each figure is the median of its runs. ``--profile`` (by default: when a download misses its target) times
the database side of a download in this process, piece by piece: see ``profile_download``.

    .venv/bin/python bench/attachments.py --write-results
    .venv/bin/python bench/attachments.py --attachments-gb 0.2 --runs 3 --backup-runs 1   # a quick look
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import http.client
import io
import os
import pstats
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from time import perf_counter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when run as bench/attachments.py

import psycopg
from sqlalchemy import select
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from bench import common
from itsm.attachments import integrity, store
from itsm.attachments.models import CHUNK_SIZE, Attachment, BlobChunk
from itsm.backups import dbtools
from itsm.board.service import create_column
from itsm.extensions import db
from itsm.localredis import free_port
from itsm.tickets.service import create_ticket
from itsm.users.service import create_user
from tests.processes import wait_for

SECTION = "## Attachments (bench/attachments.py)"
DOWNLOAD_TARGET = 0.5  # x static
RSS_TARGET_MIB = 50.0
SIZES = (1 << 20, 20 << 20)
EMAIL, PASSWORD = "bench-admin@example.com", "bench-admin-pass"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
BULK_CHUNKS = 16  # chunks per inserted blob: 16 MiB files
MIB = 1 << 20


def mib_s(size: int, seconds: float) -> float:
    return size / MIB / seconds


def label(size: int) -> str:
    return f"{size // MIB} MiB"


# --- the app over HTTP ----------------------------------------------------------------------------------------

class Web:
    """A browser's side of gunicorn on 127.0.0.1:``port``: the session cookie it was given, one request per
    connection (sync workers close each one)."""

    def __init__(self, port: int) -> None:
        self.port, self.cookies = port, SimpleCookie()

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
                headers: dict | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            headers = {"Cookie": "; ".join(f"{k}={m.value}" for k, m in self.cookies.items()), **(headers or {})}
            if content_type:
                headers["Content-Type"] = content_type
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            for cookie in response.headers.get_all("Set-Cookie") or []:
                self.cookies.load(cookie)
            return response.status, response.headers, data
        finally:
            conn.close()

    def csrf(self, path: str) -> str:
        status, _, page = self.request("GET", path)
        found = CSRF_RE.search(page.decode())
        assert status == 200 and found, f"GET {path}: HTTP {status}, no CSRF token"
        return found.group(1)

    def login(self) -> None:
        token = self.csrf("/login")
        form = f"email={EMAIL}&password={PASSWORD}&csrf_token={token}".replace("@", "%40").encode()
        status, _, _ = self.request("POST", "/login", form, "application/x-www-form-urlencoded")
        assert status == 302, f"login: HTTP {status}"

    def upload(self, ticket_id: int, token: str, name: str, content: bytes) -> float:
        """Seconds to POST the comment form with ``content`` as its one file, as a browser would."""
        fields = MultiDict({"body": f"Log: {name}", "is_public": "y", "csrf_token": token})
        fields.add("attachments", FileStorage(io.BytesIO(content), filename=name,
                                              content_type="application/octet-stream"))
        boundary, body = encode_multipart(fields)  # built before the clock starts
        start = perf_counter()
        status, _, page = self.request("POST", f"/tickets/{ticket_id}/comments", body,
                                       f"multipart/form-data; boundary={boundary}")
        took = perf_counter() - start
        assert status == 302, f"upload {name}: HTTP {status}: {page[:300]!r}"
        return took

    def download(self, path: str, expected: bytes, headers: dict | None = None) -> float:
        start = perf_counter()
        status, _, data = self.request("GET", path, headers=headers)
        took = perf_counter() - start
        assert status == 200 and data == expected, f"GET {path}: HTTP {status}, {len(data)} bytes"
        return took

    def not_modified(self, path: str) -> float:
        """Seconds of a GET answered 304 (If-None-Match of the ETag it was given): the cost of a request, no bytes."""
        _, headers, _ = self.request("GET", path)
        start = perf_counter()
        status, _, _ = self.request("GET", path, headers={"If-None-Match": headers["ETag"]})
        took = perf_counter() - start
        assert status == 304, f"GET {path} with If-None-Match: HTTP {status}"
        return took


def gunicorn_cmd(port: int, *extra: str) -> list[str]:
    """The Procfile's ``web`` line (WEB_CONCURRENCY unset: 2 workers), on loopback, with the bench's WSGI module."""
    return [sys.executable, "-m", "gunicorn", "bench.attachments_wsgi:app", "--bind", f"127.0.0.1:{port}",
            "--workers", "2", "--access-logfile", "-", "--graceful-timeout", "20", *extra]


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:  # noqa: S310
            return response.status == 200
    except OSError:
        return False


def workers_of(master: int) -> list[int]:
    """The gunicorn master's child processes: its workers."""
    return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def status_kib(pid: int, field: str) -> int:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1])


# --- 1 and 2: uploads, downloads, the worker's memory -----------------------------------------------------------

def read_as_text(sha256: str, start: int, stop: int, chunk_size: int = CHUNK_SIZE, engine=None) -> Iterator[bytes]:
    """``store.read`` as it was before it fetched bytea in binary (SQLAlchemy's default: hex-encoded text),
    kept to measure the change: bench/attachments_wsgi.py serves it for ``X-Bench-Read: text``."""
    if stop <= start:
        return
    engine = engine if engine is not None else db.engine
    first, last = start // chunk_size, (stop - 1) // chunk_size
    query = select(BlobChunk.data).where(BlobChunk.sha256 == sha256, BlobChunk.seq == db.bindparam("seq"))
    for seq in range(first, last + 1):
        with engine.connect() as conn:
            data = conn.execute(query, {"seq": seq}).scalar()
        if data is None:
            return
        lo = start - seq * chunk_size if seq == first else 0
        hi = stop - seq * chunk_size if seq == last else len(data)
        yield bytes(data[lo:hi]) if (lo, hi) != (0, len(data)) else bytes(data)


def seed(app) -> int:
    """An admin, a board column and a ticket to comment on; the ticket's id."""
    with app.app_context():
        column = create_column("New")
        user = create_user(email=EMAIL, password=PASSWORD, role="admin", name="Bench Admin")
        ticket = create_ticket(actor=user, column=column, title="VPN logs")
        db.session.commit()
        return ticket.id


def attachment_of(app, name: str) -> Attachment:
    with app.app_context():
        found = db.session.scalars(select(Attachment).where(Attachment.filename == name)).one()
        db.session.expunge(found)
        return found


KINDS = ("upload", "download", "text", "static", "copied", "cached")  # see transfer_runs


def transfer_runs(app, web: Web, plain: Web, cached: Web, ticket_id: int, static: Path,
                  runs: int) -> tuple[dict, dict, dict]:
    """Seconds of each run, per size: the upload, then in turn the download (``download``, from the database),
    the same with the text-bytea read (``text``), the static copy from the same gunicorn (``static``, sendfile)
    and from one started with --no-sendfile (``copied``), and the download again from a gunicorn with the
    attachment cache (``cached``: its first download fills the host's copy, the second, timed, is sent from it).
    Also the 304s' seconds, and the last run's downloads."""
    token = web.csrf(f"/tickets/{ticket_id}")
    times = {size: {kind: [] for kind in KINDS} for size in SIZES}
    fixed = {"download": [], "static": []}
    last = {}
    for warm in range(2):  # both workers import and connect before the clock runs
        content = os.urandom(SIZES[0])
        web.upload(ticket_id, token, f"warm-{warm}.bin", content)
        for _ in range(2):
            web.download(f"/tickets/{ticket_id}/attachments/{attachment_of(app, f'warm-{warm}.bin').id}", content)
    for run in range(runs):
        for size in SIZES:
            name = f"run{run}-{label(size).replace(' ', '')}.bin"
            content = os.urandom(size)
            (static / name).write_bytes(content)
            times[size]["upload"].append(web.upload(ticket_id, token, name, content))
            attachment = attachment_of(app, name)
            assert attachment.sha256 == hashlib.sha256(content).hexdigest() and attachment.size == size
            ours = f"/tickets/{ticket_id}/files/{attachment.id}/{name}?download=1"
            cached.download(ours, content)  # the host's first download: from the database, kept on its disk
            fetches = [("download", web, ours, None), ("text", web, ours, {"X-Bench-Read": "text"}),
                       ("static", web, f"/static/{name}", None), ("copied", plain, f"/static/{name}", None),
                       ("cached", cached, ours, None)]
            for kind, server, path, headers in fetches[run % 5:] + fetches[:run % 5]:  # each goes first in turn
                times[size][kind].append(server.download(path, content, headers))
            if size == SIZES[0]:
                fixed["download"].append(web.not_modified(ours))
                fixed["static"].append(web.not_modified(f"/static/{name}"))
            print(f"run {run + 1}/{runs} {label(size)}: "
                  + ", ".join(f"{kind} {mib_s(size, times[size][kind][-1]):.0f}" for kind in KINDS) + " MiB/s",
                  flush=True)
            last[size] = (ours, content)
            if run < runs - 1:
                (static / name).unlink()
    return times, fixed, last


def rss_growth(web: Web, master: int, path: str, content: bytes, total_mib: int) -> dict:
    """Each worker's peak RSS above its RSS at the start, while ``total_mib`` MiB of ``path`` are downloaded."""
    workers = workers_of(master)
    before = {}
    for pid in workers:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux 4.0+)
        before[pid] = status_kib(pid, "VmRSS")
    count = -(-total_mib * MIB // len(content))
    for _ in range(count):
        web.download(path, content)
    peak = {pid: status_kib(pid, "VmHWM") for pid in workers}
    return {"workers": workers, "before": before, "peak": peak, "requests": count, "mib": count * len(content) / MIB,
            "growth": max(peak[pid] - before[pid] for pid in workers) / 1024}


# --- the download's pieces, in this process -------------------------------------------------------------------

def profile_download(app, sha256: str, size: int, rounds: int = 15) -> tuple[list[str], float]:
    """Where a download's database time goes: store.read (as served, and as it was) against bare psycopg loops
    over the same chunks, the server's side alone and the pool's per-chunk cost; then cProfile of store.read."""
    with app.app_context():
        engine = db.engine
        libpq = dbtools.libpq_url(engine.url)
        chunks = -(-size // CHUNK_SIZE)
        one = "SELECT data FROM attachment_chunks WHERE sha256 = %s AND seq = %s"
        four = "SELECT data FROM attachment_chunks WHERE sha256 = %s AND seq >= %s AND seq < %s ORDER BY seq"

        def drain(reader) -> None:
            for _ in reader(sha256, 0, size, CHUNK_SIZE, engine=engine):
                pass

        held = psycopg.connect(libpq)  # opened once: the loops below time queries, not connecting

        def bare(binary: bool, per_query: int = 1) -> None:
            with held.cursor(binary=binary) as cur:
                for seq in range(0, chunks, per_query):
                    if per_query == 1:
                        cur.execute(one, (sha256, seq))
                    else:
                        cur.execute(four, (sha256, seq, seq + per_query))
                    cur.fetchall()
            held.rollback()

        def server_only() -> None:  # detoasting each chunk, nothing sent back
            for seq in range(chunks):
                held.execute("SELECT length(data) FROM attachment_chunks WHERE sha256 = %s AND seq = %s",
                             (sha256, seq)).fetchone()
            held.rollback()

        def checkouts() -> None:  # what a pooled connection per chunk costs: checkout, pre-ping, reset on return
            for _ in range(chunks):
                with engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1").scalar()

        pieces = {"store.read as served: binary bytea, a pooled connection per chunk": lambda: drain(store.read),
                  "store.read as it was: text (hex) bytea, a pooled connection per chunk": lambda: drain(read_as_text),
                  "psycopg, one connection, text bytea, a chunk per query": lambda: bare(False),
                  "psycopg, one connection, binary bytea, a chunk per query": lambda: bare(True),
                  "psycopg, one connection, binary bytea, 4 chunks per query": lambda: bare(True, 4),
                  "the server alone: length(data) of each chunk": server_only,
                  "pool checkout + pre-ping + reset per chunk, no data": checkouts}
        lines = [f"| piece of a {label(size)} download's database reads, in this process (median of {rounds}) | "
                 "time | MiB/s |", "|---|---:|---:|"]
        for call in pieces.values():
            call()  # warm: connections, prepared statements, caches
        took = {name: [] for name in pieces}
        for _ in range(rounds):  # round-robin: a busy spell on the shared machine hits every piece alike
            for name, call in pieces.items():
                start = perf_counter()
                call()
                took[name].append(perf_counter() - start)
        for name, times in took.items():
            median = statistics.median(times)
            lines.append(f"| {name} | {median * 1000:.0f} ms | {mib_s(size, median):.0f} |")
        lines += ["", "cProfile of each read of that file, the top functions by own time:", ""]
        for title, reader in (("store.read (binary bytea)", store.read), ("as it was (text bytea)", read_as_text)):
            profiler = cProfile.Profile()
            profiler.runcall(drain, reader)
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(6)
            top = [re.sub(r"\S*/site-packages/", "", line.strip()) for line in out.getvalue().splitlines()
                   if re.match(r"\s*\d+(/\d+)?\s+\d", line)]
            lines += [f"    {title}: ncalls tottime percall cumtime percall function",
                      *(f"    {line}" for line in top), ""]
        held.close()
        engine.dispose()
    return lines[:-1], statistics.median(took[next(iter(pieces))])


# --- 3: backups with gigabytes of files -----------------------------------------------------------------------

def insert_blobs(url: str, ticket_id: int, user_id: int, total_chunks: int) -> tuple[int, int]:
    """``total_chunks`` MiB of blobs of BULK_CHUNKS chunks, an attachment each, by COPY; (files, bytes)."""
    base = os.urandom(CHUNK_SIZE)
    files = written = 0
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for first in range(0, total_chunks, BULK_CHUNKS):
            n = min(BULK_CHUNKS, total_chunks - first)
            chunks = [struct.pack(">QQ", files, seq) + base[16:] for seq in range(n)]  # differ, cheaply
            sha256 = hashlib.sha256(b"".join(chunks)).hexdigest()
            size = n * CHUNK_SIZE
            cur.execute("INSERT INTO attachment_blobs (sha256, size, chunk_size, created_at) VALUES (%s, %s, %s, "
                        "now())", (sha256, size, CHUNK_SIZE))
            with cur.copy("COPY attachment_chunks (sha256, seq, data) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["varchar", "int4", "bytea"])
                for seq, chunk in enumerate(chunks):
                    copy.write_row((sha256, seq, chunk))
            cur.execute("INSERT INTO attachments (ticket_id, sha256, filename, size, content_type, uploaded_by_id, "
                        "created_at, from_template) VALUES (%s, %s, %s, %s, 'application/octet-stream', %s, now(), "
                        "false)", (ticket_id, sha256, f"bulk-{files:05d}.bin", size, user_id))
            files, written = files + 1, written + size
            if files % 32 == 0:
                conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE attachment_chunks")  # hint bits set now, not by the first timed dump
        conn.execute("CHECKPOINT")  # the inserts' dirty pages written now, not during a timed run
    return files, written


def flask_cli(args: list[str], env: dict) -> tuple[float, str]:
    start = perf_counter()
    result = subprocess.run([sys.executable, "-m", "flask", *args], env=env, cwd=common.ROOT, capture_output=True,
                            text=True)
    took = perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args)}: exit {result.returncode}: {result.stderr.strip()[-500:]}")
    return took, result.stdout


def backup_runs(url: str, env: dict, backups: Path, runs: int) -> dict:
    times = {"bare": [], "create": [], "verify": [], "size": [], "bare_size": []}
    with psycopg.connect(url) as conn:
        pg_dump = dbtools.check_client("pg_dump", conn)  # the binary the backup runs
    times["cli"], _ = flask_cli(["backup", "--help"], env)
    for run in range(runs):
        dump = backups.parent / "bare.dump"
        start = perf_counter()
        subprocess.run([pg_dump, "--format=custom", "--compress=6", f"--file={dump}", f"--dbname={url}"], check=True)
        times["bare"].append(perf_counter() - start)
        times["bare_size"].append(dump.stat().st_size)
        dump.unlink()
        took, out = flask_cli(["backup", "create"], env)
        times["create"].append(took)
        path = Path(re.search(r"Created (\S+) \(", out).group(1))
        times["size"].append(path.stat().st_size)
        took, out = flask_cli(["backup", "verify", str(path)], env)
        times["verify"].append(took)
        print(f"run {run + 1}/{runs}: bare pg_dump {times['bare'][-1]:.1f} s, backup create {times['create'][-1]:.1f} "
              f"s, verify {times['verify'][-1]:.1f} s ({out.strip()[:160]}), "
              f"{times['size'][-1] / MIB:.0f} MiB", flush=True)
        for leftover in backups.iterdir():
            leftover.unlink()
    return times


class BinaryResults:
    """A psycopg connection whose results come in binary: ``integrity.problems`` as it would run if it asked."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def execute(self, query: str, params=()):
        return self.conn.execute(query, params, binary=True)


def reassembly_times(url: str) -> dict:
    """Seconds of verify's last step, every blob reassembled and hashed (``integrity.problems``), run on the
    bench's database: as verify runs it (text bytea), and with binary results."""
    times = {}
    for kind, wrap in (("text", lambda conn: conn), ("binary", BinaryResults)):
        with psycopg.connect(url) as conn:
            start = perf_counter()
            found = integrity.problems(wrap(conn), "%s")
            times[kind] = perf_counter() - start
        assert found == [], found
    return times


# --- the report -----------------------------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def transfer_rows(times: dict, fixed: dict, runs: int) -> tuple[list[str], bool]:
    rows = [f"| file (median of {runs}), MiB/s | upload | first download (database) | the same, text bytea "
            "(before) | download from the host's copy | static | static, --no-sendfile | first / static | "
            "from the copy / static | target | verdict |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    ok = True
    for size, t in times.items():
        rate = {kind: mib_s(size, statistics.median(t[kind])) for kind in KINDS}
        first, ratio = rate["download"] / rate["static"], rate["cached"] / rate["static"]
        ok &= ratio >= DOWNLOAD_TARGET
        rows.append(f"| {label(size)} | {rate['upload']:.0f} | {rate['download']:.0f} | {rate['text']:.0f} "
                    f"({rate['download'] / rate['text']:.2f}x slower) | {rate['cached']:.0f} | {rate['static']:.0f} "
                    f"| {rate['copied']:.0f} | {first:.2f}x | {ratio:.2f}x | >= {DOWNLOAD_TARGET}x | "
                    f"{verdict(ratio >= DOWNLOAD_TARGET)} |")
    rows += ["", f"- A request's fixed cost, a 304 on If-None-Match (median of {runs}): download "
             f"{statistics.median(fixed['download']) * 1000:.1f} ms (login session, attachment and blob looked up), "
             f"static {statistics.median(fixed['static']) * 1000:.1f} ms."]
    return rows, ok


def breakdown(t: dict, fixed: dict, reads: float, size: int) -> str:
    """Where a download's time goes: the 304's fixed cost, the database reads timed in this process, the rest."""
    total, first = statistics.median(t["download"]), statistics.median(fixed["download"])
    rest = total - first - reads
    return (f"- A {label(size)} download takes {total * 1000:.1f} ms: {first * 1000:.1f} ms a request's fixed cost "
            f"(the 304), {reads * 1000:.1f} ms reading its chunks (store.read in this process, below), "
            f"{rest * 1000:.1f} ms the rest (the worker writing the chunks to its socket, the client reading them, "
            f"the other processes' share of 2 CPUs). The static file takes "
            f"{statistics.median(t['static']) * 1000:.1f} ms in all; 0.5x of it would leave "
            f"{statistics.median(t['static']) * 2000:.1f} ms for the whole download.")


def rss_rows(rss: dict) -> list[str]:
    per = ", ".join(f"{rss['before'][p] / 1024:.0f} -> peak {rss['peak'][p] / 1024:.0f} MiB"
                    for p in rss["workers"])
    return ["| worker memory while streaming | value | target | verdict |", "|---|---:|---|---|",
            f"| peak RSS growth of the busier worker ({rss['requests']} downloads, {rss['mib']:.0f} MiB; "
            f"workers: {per}) | {rss['growth']:.1f} MiB | < {RSS_TARGET_MIB:.0f} MiB | "
            f"{verdict(rss['growth'] < RSS_TARGET_MIB)} |"]


def backup_rows(b: dict, runs: int, files: int, written: int) -> list[str]:
    bare, create, verify = (statistics.median(b[k]) for k in ("bare", "create", "verify"))

    def each(kind: str) -> str:
        return ", ".join(f"{t:.0f}" for t in b[kind])

    return [f"| backups with {files} files, {written / 2**30:.2f} GiB of attachments (median of {runs}) | time | "
            "/ bare pg_dump | each run, s |", "|---|---:|---:|---|",
            f"| baseline: bare `pg_dump -Fc --compress=6` ({statistics.median(b['bare_size']) / MIB:.0f} MiB) | "
            f"{bare:.1f} s | 1.00x | {each('bare')} |",
            f"| `flask backup create` ({statistics.median(b['size']) / MIB:.0f} MiB) | {create:.1f} s | "
            f"{create / bare:.2f}x | {each('create')} |",
            f"| `flask backup verify FILE` (checksum, restore, row counts, every blob reassembled and hashed) | "
            f"{verify:.1f} s | {verify / bare:.2f}x | {each('verify')} |",
            f"| of each: starting the `flask` CLI (`flask backup --help`) | {b['cli']:.1f} s | | |",
            f"| of verify: every blob reassembled and hashed (`integrity.problems`, text bytea as verify reads it; "
            f"once, on the live database) | {b['reassembly']['text']:.1f} s | | |",
            f"| the same with binary results (not what verify does today) | {b['reassembly']['binary']:.1f} s | | |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each upload and download")
    parser.add_argument("--rss-mb", type=int, default=200, help="MiB streamed while the worker's memory is watched")
    parser.add_argument("--attachments-gb", type=float, default=2.0, help="GiB of attachments for the backups")
    parser.add_argument("--backup-runs", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10", help="a Redis database this run owns")
    parser.add_argument("--profile", choices=("auto", "yes", "no"), default="auto",
                        help="time a download's database reads in this process (auto: when a download misses)")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with (common.postgres_database() as url, tempfile.TemporaryDirectory(prefix="itsm-bench-attach-") as tmp,
          common.flushed(args.redis_url)):
        tmp_path = Path(tmp)
        static, backups, log = tmp_path / "static", tmp_path / "backups", tmp_path / "gunicorn.log"
        static.mkdir()
        backups.mkdir()
        app = common.bench_app(url, REDIS_URL=args.redis_url)
        common.migrate(app)
        ticket_id = seed(app)
        port, plain_port, cached_port = free_port(), free_port(), free_port()
        env = common.flask_env(url, args.redis_url, BENCH_STATIC_DIR=str(static), BACKUP_DIR=str(backups))
        no_cache = ["env", "ATTACHMENT_CACHE_MB=0"]  # these two read every download from the database
        cache = ["env", "ATTACHMENT_CACHE_MB=1024", f"ATTACHMENT_CACHE_DIR={tmp_path / 'cache'}"]
        servers = [[*no_cache, *gunicorn_cmd(port)], [*no_cache, *gunicorn_cmd(plain_port, "--no-sendfile")],
                   [*cache, *gunicorn_cmd(cached_port)]]
        with common.log_tail_on_error(log), common.running(servers, env, log) as (server, *_):
            for p in (port, plain_port, cached_port):
                wait_for(lambda p=p: healthy(p), timeout=60, interval=0.2, message="gunicorn to answer /healthz")
            web, cached = Web(port), Web(cached_port)
            web.login()
            cached.login()
            times, fixed, last = transfer_runs(app, web, Web(plain_port), cached, ticket_id, static, args.runs)
            ours, content = last[SIZES[-1]]
            rss = rss_growth(web, server.pid, ours, content, args.rss_mb)
            print(f"worker RSS growth while streaming {rss['mib']:.0f} MiB: {rss['growth']:.1f} MiB", flush=True)
        rows, downloads_ok = transfer_rows(times, fixed, args.runs)
        profile = []
        if args.profile == "yes" or (args.profile == "auto" and not downloads_ok):
            big = attachment_of(app, Path(ours.split("?")[0]).name)
            profile, reads = profile_download(app, big.sha256, big.size)
            profile = [breakdown(times[big.size], fixed, reads, big.size), "", *profile]
            print("\n".join(profile), flush=True)
        shutil.rmtree(static)
        with app.app_context():
            user_id = db.session.scalar(select(Attachment.uploaded_by_id).limit(1))
            db.engine.dispose()
        start = perf_counter()
        files, written = insert_blobs(url, ticket_id, user_id, round(args.attachments_gb * 1024))
        print(f"inserted {files} files, {written / 2**30:.2f} GiB, in {perf_counter() - start:.0f} s", flush=True)
        b = backup_runs(url, env, backups, args.backup_runs)
        b["reassembly"] = reassembly_times(url)
    load_end = os.getloadavg()[0]
    rows += ["", *rss_rows(rss), "", *backup_rows(b, args.backup_runs, files, written)]
    notes = [
        "- PostgreSQL. gunicorn with the Procfile's command line (2 sync workers), WSGI module "
        "bench/attachments_wsgi.py: wsgi.py's app, its /static/ served from a temporary folder holding copies of "
        "the files, and the text-bytea read for `X-Bench-Read: text`. A second such gunicorn with `--no-sendfile` "
        "serves the static copies through Python. The client runs in this process, a connection per request (sync "
        f"workers close them). The machine is shared: 1-min load average {load:.2f} at start, {load_end:.2f} at "
        "the end; other test runs may be going on.",
        "- Upload: `POST /tickets/<id>/comments` (body, is_public, csrf_token, the file in `attachments`, "
        "multipart), logged in as an admin through the login form, the token read from the ticket page; a new "
        "random file each run (every upload writes its blob). Until the 302: multipart parsing (to a temporary "
        "file), SHA-256, 1 MiB chunk inserts, commit.",
        "- Download: `GET /tickets/<id>/files/<aid>/<name>?download=1` of that file, against `/static/<name>` "
        "of a copy of it (Flask's send_file; gunicorn sends it with sendfile(2)); the client checks every byte. "
        "The first two gunicorns run with `ATTACHMENT_CACHE_MB=0`: every download there is read from the database "
        "(what a host's first download of a file costs). A third runs as deployed, with the attachment cache: after "
        "its first download of the file (untimed) the timed one is sent from the host's copy with sendfile; the "
        "target is for those, the downloads after a host's first. The five downloads of a run go in turn first.",
        "- Worker memory: each worker's (not the master's) peak RSS reset to its RSS through /proc/<pid>/clear_refs, "
        "then VmHWM after the downloads, one at a time; the figure is the larger growth of the two.",
        "- Backups: blobs inserted by COPY (16 MiB files of 1 MiB chunks, random bytes: incompressible), then "
        "VACUUM ANALYZE and CHECKPOINT; `flask backup create` and `flask backup verify FILE` run as commands (the "
        "CLI's start included), the bare dump with the same pg_dump binary and compression level.",
    ]
    print("\n" + "\n".join(rows + [""] + notes + [""] + profile))
    if args.write_results:
        lines = [*common.section_head(SECTION, "bench/attachments.py", common.machine()), *notes, "", *rows]
        if profile:
            lines += ["", *profile]
        common.write_section(SECTION, lines)
    if not downloads_ok or rss["growth"] >= RSS_TARGET_MIB:
        sys.exit(1)


if __name__ == "__main__":
    main()
