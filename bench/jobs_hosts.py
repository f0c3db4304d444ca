"""Jobs across hosts: two worker hosts against one Redis and one PostgreSQL over veth, against the same two
workers on one host, in the same run.

Hosts are network namespaces joined by veth pairs to a bridge this script makes (and always removes; needs
root and iproute2). Redis (a redis-server of its own) and PostgreSQL (a throwaway cluster made with initdb,
run as the postgres user) listen on the bridge's address, so both variants reach them by IP: on one host
(the root namespace, two ``flask worker --concurrency 1 --burst``), or across the veth hop (one of those
workers in each of two namespaces). Rate = N / (latest RQ ``ended_at`` - earliest ``started_at``), every job
``finished`` and N JobRun rows ``succeeded``. Target: two hosts >= 0.8x one host.

Run by ``bench/jobs.py`` (its "across hosts" table), or on its own: ``.venv/bin/python bench/jobs_hosts.py``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis import Redis
from sqlalchemy import func, select, text

from bench import benchtasks, common
from itsm.extensions import db
from jobs.models import JobRun

TARGET = 0.8


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def network(token: str, hosts: int):
    """A bridge 10.77.<n>.1/24 in this namespace and ``hosts`` namespaces on it; yields (address, namespaces)."""
    subnet = f"10.77.{int(token[:2], 16) % 250 + 1}"
    bridge, names = f"brb{token}", [f"itsmb{token}{i}" for i in range(hosts)]
    try:
        sh("ip", "link", "add", bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{subnet}.1/24", "dev", bridge)
        sh("ip", "link", "set", bridge, "up")
        for i, ns in enumerate(names):
            sh("ip", "netns", "add", ns)
            outer, inner = f"vb{token}{i}", f"vn{token}{i}"
            sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            sh("ip", "link", "set", outer, "master", bridge, "up")
            sh("ip", "link", "set", inner, "netns", ns)
            sh("ip", "-n", ns, "addr", "add", f"{subnet}.{11 + i}/24", "dev", inner)
            sh("ip", "-n", ns, "link", "set", inner, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield f"{subnet}.1", names
    finally:
        for i, ns in enumerate(names):
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            subprocess.run(["ip", "link", "del", f"vb{token}{i}"], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


@contextmanager
def redis_server(address: str, workdir: Path):
    port = free_port(address)
    # Protected mode refuses clients off the loopback; this server is bound to the bench's own bridge only.
    proc = subprocess.Popen(["redis-server", "--bind", address, "--port", str(port), "--save", "", "--appendonly",
                             "no", "--protected-mode", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://{address}:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                Redis.from_url(url).ping()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def postgres_cluster(address: str, workdir: Path):
    """A throwaway PostgreSQL cluster listening on ``address`` (trust), run as the postgres user."""
    bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
    data = workdir / "pg"
    data.mkdir()
    shutil.chown(workdir, "postgres")
    shutil.chown(data, "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    sh(*as_pg, f"{bindir}/initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    with open(data / "pg_hba.conf", "a") as hba:
        hba.write(f"host all all {address.rsplit('.', 1)[0]}.0/24 trust\n")
    port = free_port(address)
    sh(*as_pg, f"{bindir}/pg_ctl", "-D", str(data), "-w", "-l", str(workdir / "pg.log"), "-o",
       f"-c listen_addresses={address} -p {port} -k {workdir}", "start")
    try:
        url = f"postgresql://postgres@{address}:{port}/postgres"
        yield url
    finally:
        subprocess.run([*as_pg, f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)


def run_workers(prefixes: list[list[str]], env: dict, ids: list[str], redis_url: str, log: Path) -> float:
    cmd = [sys.executable, "-m", "flask", "worker", "--concurrency", "1", "--burst"]
    with log.open("ab") as out:
        procs = [common.spawn([*p, *cmd], env, out) for p in prefixes]
        codes = [p.wait(timeout=600) for p in procs]
    client = Redis.from_url(redis_url)
    with client.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(f"rq:job:{job_id}", "status", "started_at", "ended_at")
        rows = pipe.execute()
    finished = [r for r in rows if r[0] == b"finished"]
    if any(codes) or len(finished) != len(ids):
        raise RuntimeError(f"workers exited {codes}, {len(finished)}/{len(ids)} finished; see {log}")
    first = min(datetime.fromisoformat(r[1].decode()) for r in finished)
    last = max(datetime.fromisoformat(r[2].decode()) for r in finished)
    return len(ids) / (last - first).total_seconds()


def one_run(app, env: dict, prefixes: list[list[str]], n: int, redis_url: str, log: Path) -> float:
    Redis.from_url(redis_url).flushdb()
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text("DELETE FROM job_runs"))
        ids = benchtasks.noop.apply_many(((i,), {}) for i in range(n))
    rate = run_workers(prefixes, env, ids, redis_url, log)
    with app.app_context():
        done = db.session.scalar(select(func.count()).select_from(JobRun).where(JobRun.status == "succeeded"))
        db.session.remove()
    if done != n:
        raise RuntimeError(f"{done}/{n} JobRun rows succeeded; see {log}")
    return rate


def available() -> str | None:
    """None when the two-host run can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not shutil.which("ip") or not shutil.which("redis-server") or not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return "needs iproute2, redis-server and PostgreSQL's initdb"
    return None


def measure(n: int, runs: int) -> list[str]:
    """The two-host comparison as Markdown rows (for bench/jobs.py's section)."""
    token = uuid.uuid4().hex[:6]
    log = Path(tempfile.gettempdir()) / f"itsm-bench-hosts-{token}.log"
    rates: dict[str, list[float]] = {"one host": [], "two hosts": []}
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="itsm-bench-hosts-")))
        address, names = stack.enter_context(network(token, 2))
        redis_url = stack.enter_context(redis_server(address, workdir))
        pg_url = stack.enter_context(postgres_cluster(address, workdir))
        app = common.bench_app(pg_url, REDIS_URL=redis_url, JOBS_EAGER=False)
        common.migrate(app)
        env = common.flask_env(pg_url, redis_url, JOBS_IMPORTS="bench.benchtasks")
        for run in range(runs):
            for label, prefixes in (("one host", [[], []]),
                                    ("two hosts", [["ip", "netns", "exec", ns] for ns in names])):
                rates[label].append(one_run(app, env, prefixes, n, redis_url, log))
            print(f"hosts run {run + 1}/{runs}: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in rates.items()),
                  flush=True)
        with app.app_context():
            db.engine.dispose()
    median = {k: statistics.median(v) for k, v in rates.items()}
    ratio = median["two hosts"] / median["one host"]
    return [
        f"| across hosts, N = {n}, PostgreSQL audit (see below) | jobs/s | each run |", "|---|---:|---|",
        *[f"| {k}: two `flask worker -c 1` | {median[k]:.0f} | {', '.join(f'{r:.0f}' for r in v)} |"
          for k, v in rates.items()],
        "", "| ratio | value | target | verdict |", "|---|---:|---|---|",
        f"| two hosts / one host | {ratio:.2f}x | >= {TARGET:.2f}x | {'PASS' if ratio >= TARGET else 'MISS'} |",
        "", "- Across hosts: two `flask worker --concurrency 1 --burst` processes, both in this namespace (one host) "
        "or one in each of two network namespaces behind veth pairs on a bridge (two hosts). Redis (its own "
        "redis-server) and a throwaway PostgreSQL cluster (initdb) listen on the bridge's address, so both variants "
        "reach them by IP; the same no-op audited task, same rate definition, runs interleaved.",
    ]


if __name__ == "__main__":
    reason = available()
    if reason:
        raise SystemExit(f"bench/jobs_hosts.py: {reason}")
    print("\n".join(measure(5_000, 3)))
