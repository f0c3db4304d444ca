"""Several hosts: one deployment across four machines, made of Linux network namespaces.

Each host is a network namespace of its own, with its own host name (its processes run under
``unshare --uts`` + ``hostname``, so worker names ``<host>.<pid>.<slot>`` and scheduler names
``itsm.<host>.<pid>`` say where they run), joined by a veth pair to a bridge in the root namespace. Names
and subnet are this run's own (a random token), and the fixture removes them all, and kills whatever runs
in the namespaces, also after a failure:

- ``web``: ``gunicorn wsgi:app`` (2 sync workers, as the Procfile runs it) and a standby ``flask scheduler``;
- ``worker1`` and ``worker2``: one ``flask worker`` each (one process, so a busy host takes nothing else);
- ``scheduler``: the first ``flask scheduler``.

PostgreSQL, Redis and the SMTP sink (aiosmtpd) are the other machines, reached by the bridge's address,
never localhost. The system PostgreSQL and Redis listen on 127.0.0.1 only and must not be reconfigured, so
this test relays their ports from the bridge's address (``TcpRelay``, in this process): the real servers
and the session's migrated database, with nothing to initialise or install. A host cut off looks to the
relay as it would to a real server: its connections go quiet (no reset, no close), and what it held stays
held. PostgreSQL only: machines share a database server; a SQLite file lives on one machine.

Checked, in order:

1. the send jobs the web enqueues (ticket emails) run on both worker hosts;
2. ``flask jobs ping`` (run on the web host) and ``/readyz`` name both workers and both schedulers, each
   with its host;
3. a worker host cut off (its link down) in the middle of a job: the job is seen as abandoned and runs
   again on the other host, once (audit: lost on the cut host, succeeded on the other; its rows committed
   once). The cut host stays cut until the end: a machine that comes back from the dead with a job still
   running is the at-least-once case the README describes, not this one;
4. the scheduler host cut off, holding rq-scheduler's lock (the worst case, made so on every run): the
   standby on the web host goes on once the lock lapses (11 s), and ping shows the lost one's heartbeat
   going stale. Then its link comes back and both schedulers run side by side before they are stopped.

Over the whole run: every tick of an every-second schedule fired once and ran its body once, none missing
(its misfire policy is ``all``: a lock held by the lost host is downtime, and ``all`` runs each tick it
missed); every recurring template opened exactly one ticket, also those that came due while the scheduler
host was cut off; every email (the web's ticket emails, the recurring tickets' assignment emails) reached
the SMTP sink exactly once.

Skipped (failed with REQUIRE_SERVICES=1) only where the hosts cannot be made: not root, no ``ip``,
``unshare`` or ``hostname``, or a kernel that refuses namespaces or veth pairs.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from rq import Worker
from rq_scheduler import Scheduler

from itsm.extensions import db
from itsm.mail.models import EmailMessage
from itsm.recurring.models import TicketRecurrence
from itsm.schedules import service
from itsm.schedules.validation import Definition
from itsm.tickets.models import Ticket
from jobs import liveness
from tests.conftest import TEST_REDIS_URL, service_missing
from tests.integration.test_scheduler_processes import firings
from tests.mailserver import MailServer
from tests.processes import Processes, wait_for
from tests.relay import TcpRelay
from tests.reliability.conftest import WebServer, final_runs, job_runs, queues_idle, scalar, tickets_titled

ROLES = ("web", "worker1", "worker2", "scheduler")
WEB_PORT = 8000  # inside the web host's own namespace: nothing else can hold it
READYZ_TOKEN = "several-hosts"
WEB_TICKETS = 12
ROWS = 3  # tickets the job cut off mid-transaction writes
LOCK_SECONDS = 11  # rq-scheduler's lock expiry: its interval (1 s) + 10 s
TAKEOVER = timedelta(seconds=LOCK_SECONDS + 2)
MESSAGE_ID = re.compile(r"<itsm-outbox-(\d+)[.@]")
PING_LINE = re.compile(r"^(worker|scheduler) +(\S+) .*heartbeat +([\d.]+)s ago", re.MULTILINE)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def require_namespaces() -> None:
    """Skip (or fail, with REQUIRE_SERVICES=1) where the hosts cannot be made; probe with one of each."""
    if os.geteuid() != 0:
        service_missing("network namespaces and veth pairs need root")
    missing = [tool for tool in ("ip", "unshare", "hostname") if shutil.which(tool) is None]
    if missing:
        service_missing(f"{', '.join(missing)} not found (iproute2, util-linux, hostname)")
    token = uuid.uuid4().hex[:6]
    probe, link = f"itsm-probe-{token}", f"itq{token}"
    try:
        for args in (("netns", "add", probe), ("link", "add", link, "type", "veth", "peer", "name", f"{link}p"),
                     ("link", "set", f"{link}p", "netns", probe)):
            made = ip(*args, check=False)
            if made.returncode:
                service_missing(f"cannot make a host: ip {' '.join(args)}: {made.stderr.strip()}")
    finally:
        ip("link", "del", link, check=False)
        ip("netns", "del", probe, check=False)


def free_subnet() -> str:
    """The first three octets of a 10.x.y.0/24 no address or route of this machine is in."""
    used = ip("-4", "-o", "addr").stdout + ip("-4", "route").stdout
    for _ in range(200):
        prefix = f"10.{random.randint(64, 199)}.{random.randint(0, 255)}"
        if f"{prefix}." not in used:
            return prefix
    raise RuntimeError("no free 10.x.y.0/24 subnet")


@dataclass
class Host:
    role: str
    netns: str
    name: str  # its host name
    address: str
    link: str  # the root namespace's end of its veth pair: down is the host cut off

    @property
    def prefix(self) -> list[str]:
        """Runs a command on this host: its network, its host name (each ends by exec'ing the next)."""
        return ["ip", "netns", "exec", self.netns, "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"',
                self.name]


class Network:
    """A bridge in the root namespace (the servers' address) and one namespace per host on it."""

    def __init__(self, roles: tuple[str, ...]) -> None:
        self.token = uuid.uuid4().hex[:6]  # interface names: at most 15 characters
        prefix = free_subnet()
        self.bridge, self.gateway = f"itb{self.token}", f"{prefix}.1"
        self.hosts = {role: Host(role, f"itsm-{self.token}-{role}", f"{role}-{self.token}", f"{prefix}.{10 + n}",
                                 f"itv{self.token}{n}") for n, role in enumerate(roles)}

    def create(self) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for n, host in enumerate(self.hosts.values()):
            peer = f"itp{self.token}{n}"
            ip("netns", "add", host.netns)
            ip("link", "add", host.link, "type", "veth", "peer", "name", peer)
            ip("link", "set", peer, "netns", host.netns)
            ip("link", "set", host.link, "master", self.bridge, "up")
            ip("-n", host.netns, "link", "set", peer, "name", "eth0")
            ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            ip("-n", host.netns, "link", "set", "eth0", "up")
            ip("-n", host.netns, "link", "set", "lo", "up")

    def cut(self, host: Host) -> None:
        """The cable pulled: its side stays up and its processes run on, but nothing gets through."""
        ip("link", "set", host.link, "down")

    def heal(self, host: Host) -> None:
        ip("link", "set", host.link, "up")

    def kill_processes(self) -> None:
        """SIGKILL whatever runs in the hosts (only what this test started runs there)."""
        for host in self.hosts.values():
            for pid in ip("netns", "pids", host.netns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)

    def destroy(self) -> list[str]:
        """Remove the links and namespaces; returns whatever of them is still there."""
        for host in self.hosts.values():
            ip("link", "del", host.link, check=False)  # takes its peer in the namespace with it
            ip("netns", "del", host.netns, check=False)
        ip("link", "del", self.bridge, check=False)
        listed = ip("-o", "link", check=False).stdout + ip("netns", "list", check=False).stdout
        return [line for line in listed.splitlines() if self.token in line]


@dataclass
class Deployment:
    net: Network
    procs: Processes  # on the relayed database and Redis
    mail: MailServer

    def host(self, role: str) -> Host:
        return self.net.hosts[role]

    @property
    def env(self) -> dict[str, str]:
        return {**self.mail.env(), "READYZ_TOKEN": READYZ_TOKEN}

    def ping(self, role: str = "web") -> tuple[subprocess.CompletedProcess, dict[str, dict[str, float]]]:
        """``flask jobs ping`` on a host: its output, and the heartbeat ages it shows by kind and host."""
        done = self.procs.run("jobs", "ping", prefix=self.host(role).prefix, **self.env)
        seen: dict[str, dict[str, float]] = {"worker": {}, "scheduler": {}}
        for kind, name, age in PING_LINE.findall(done.stdout):
            seen[kind][host_of(name)] = float(age)
        return done, seen


def host_of(name: str) -> str:
    """The host in a worker's name (``<host>.<pid>.<slot>``) or a scheduler's (``itsm.<host>.<pid>``)."""
    return name.split(".")[1] if name.startswith("itsm.") else name.split(".")[0]


@pytest.fixture
def hosts(app, redis, database_url, tmp_path):
    require_namespaces()
    net = Network(ROLES)
    relays: list[TcpRelay] = []
    mail = procs = None
    try:
        net.create()
        # The system servers answer on 127.0.0.1 only: relayed from the bridge's address (see the docstring).
        relays = [TcpRelay(database_url, net.gateway, default_port=5432), TcpRelay(TEST_REDIS_URL, net.gateway)]
        for relay in relays:
            relay.restore()
        mail = MailServer(net.gateway)
        mail.start()
        procs = Processes(relays[0].url, relays[1].url, tmp_path)
        print("hosts:", {h.role: (h.name, h.address) for h in net.hosts.values()}, "servers:", net.gateway)
        yield Deployment(net, procs, mail)
    finally:
        net.kill_processes()  # first: the cut hosts' processes would never stop on a SIGTERM
        if procs is not None:
            procs.stop_all()  # reaps them
            print(procs.logs())  # pytest shows it when the test failed
        for relay in relays:
            relay.cut()  # closes the lost hosts' server connections (and their open transactions)
        if mail is not None:
            mail.close()
        left = net.destroy()
        assert not left, f"left behind: {left}"


def add_templates(app, assignee_id: int, dues: list[datetime]) -> list[int]:
    """Recurring templates (daily, assigned: each occurrence emails the assignee), one due at each time."""
    now = datetime.now(UTC)
    with app.app_context():
        ids = db.session.scalars(sa.insert(Ticket).returning(Ticket.id), [
            {"title": f"Recurring {due:%H:%M:%S}", "is_recurring": True, "assignee_id": assignee_id,
             "created_at": now, "updated_at": now} for due in dues]).all()
        db.session.execute(sa.insert(TicketRecurrence), [
            {"ticket_id": t, "recurrence_interval": "daily", "recurrence_time_zone": "UTC", "recurrence_anchor": due,
             "next_occurrence": due, "recurrence_due_at": due} for t, due in zip(ids, dues, strict=True)])
        db.session.commit()
    return list(ids)


def opened(app, templates: list[int]) -> Counter:
    """Tickets opened per template."""
    with app.app_context():
        return Counter(db.session.scalars(sa.select(Ticket.template_id).where(Ticket.template_id.in_(templates))))


def outbox(app) -> list[EmailMessage]:
    with app.app_context():
        rows = db.session.scalars(sa.select(EmailMessage).order_by(EmailMessage.id)).all()
        db.session.expunge_all()
        return rows


def readyz(web: WebServer) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(web.host, web.port, timeout=30)
    try:
        conn.request("GET", f"/readyz?token={READYZ_TOKEN}")
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def create_tickets(web: WebServer, column_id: int, count: int) -> None:
    """Through the form, as a browser would: each commit writes the requester's email and enqueues its send."""
    cookie, token = web.login()
    conn = http.client.HTTPConnection(web.host, web.port, timeout=60)
    try:
        for n in range(count):
            body = urlencode({"title": f"Web {n}", "priority": "2", "column_id": str(column_id), "assignee_id": "0",
                              "requester_email": f"requester{n}@example.com", "csrf_token": token})
            conn.request("POST", "/tickets/new", body=body, headers={
                "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
            response = conn.getresponse()
            page = response.read().decode(errors="replace")
            assert response.status == 302, (response.status, page[:300])
    finally:
        conn.close()


def scheduler_ages(redis) -> dict[str, float]:
    return {host_of(s.name): s.heartbeat_age for s in liveness.schedulers(redis)}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_deployment_across_four_hosts(app, redis, ids, hosts):
    """See the module's docstring: what each host runs, the faults, and what must hold across them."""
    web_host, first, second, scheduler_host = (hosts.host(role) for role in ROLES)
    procs, env = hosts.procs, hosts.env
    web = WebServer(procs, host=web_host.address, port=WEB_PORT, prefix=web_host.prefix, **env)
    procs.worker(prefix=first.prefix, **env)
    procs.worker(prefix=second.prefix, **env)
    schedulers = [procs.start("scheduler", prefix=scheduler_host.prefix, **env),
                  procs.start("scheduler", prefix=web_host.prefix, **env)]  # the standby
    web.wait_ready()
    worker_hosts, scheduler_hosts = {first.name, second.name}, {scheduler_host.name, web_host.name}
    wait_for(lambda: {host_of(w.name) for w in Worker.all(connection=redis)} == worker_hosts
             and set(scheduler_ages(redis)) == scheduler_hosts, timeout=90, interval=0.2,
             message="a worker on each worker host and a scheduler on the scheduler and web hosts")

    # 1. What the web enqueues runs on both worker hosts.
    create_tickets(web, ids.columns["New"], WEB_TICKETS)
    wait_for(lambda: len(hosts.mail.messages) >= WEB_TICKETS, timeout=60, interval=0.1,
             message="the web's ticket emails at the SMTP sink")

    def sends_done():  # the email can arrive a moment before its job's audit row says where it ran
        rows = [r for r in job_runs(app) if r.task_name in ("send_email", "send_emails")]
        return all(r.status == "succeeded" for r in rows) and rows
    sends = wait_for(sends_done, timeout=30, message="the send jobs' audit rows")
    assert {host_of(r.worker) for r in sends} == worker_hosts, [(r.task_name, r.worker) for r in sends]

    # 2. ping and /readyz see every worker and scheduler, with its host.
    done, seen = hosts.ping()
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(seen["worker"]) == worker_hosts and set(seen["scheduler"]) == scheduler_hosts, done.stdout
    status, body = readyz(web)
    assert status == 200, body
    assert {host_of(n) for n in body["checks"]["workers"]["names"]} == worker_hosts, body
    assert {host_of(n) for n in body["checks"]["scheduler"]["names"]} == scheduler_hosts, body

    with app.app_context():
        ticking = service.save(Definition(name="every-second", task="t.count", kind="interval", every=1,
                                          period="seconds", args=["ticks"], misfire_policy="all",
                                          overlap_policy="allow"))
        service.save(Definition(name="process-recurring-tickets", task="process_recurring_tickets", kind="interval",
                                every=2, period="seconds"))
        db.session.commit()
        tick_task = ticking.id
    templates = add_templates(app, ids.agent, [datetime.now(UTC)] * 3)
    wait_for(lambda: len(opened(app, templates)) == 3, timeout=30, message="the recurring tickets due now")

    # 3. A worker host cut off in the middle of a job: it runs again on the other host, once.
    enqueued = procs.run("jobs", "enqueue", "t.gated_rows", "--args", json.dumps(["cut", ROWS]),
                         prefix=web_host.prefix, **env)
    assert enqueued.returncode == 0, enqueued.stderr
    job_id = re.search(r" as (\S+) on ", enqueued.stdout).group(1)
    running = wait_for(lambda: next((r for r in job_runs(app, job_id) if r.status == "running"), None),
                       timeout=30, message="the job running, inside its transaction, on a worker host")
    assert redis.get("cut:inside").startswith(b"1:")
    lost, survivor = (first, second) if host_of(running.worker) == first.name else (second, first)
    hosts.net.cut(lost)
    cut_at = time.monotonic()
    redis.set("cut:go", 1)  # the lost host cannot see it: its attempt waits on Redis for good
    rows = final_runs(app, job_id, 2, timeout=60)
    assert [(r.attempt, r.status) for r in rows] == [(1, "lost"), (2, "succeeded")], rows
    assert rows[0].error_type == "WorkerLost" and host_of(rows[0].worker) == lost.name
    assert host_of(rows[1].worker) == survivor.name
    assert int(redis.get("cut:committed")) == 1 and tickets_titled(app, "cut") == ROWS
    print(f"the job of {lost.name} ran again on {survivor.name} {time.monotonic() - cut_at:.1f}s after the cut")

    # 4. The scheduler host cut off: the standby goes on; then the link comes back.
    cut_time = datetime.now(UTC)
    due_meanwhile = add_templates(app, ids.agent, [cut_time + timedelta(seconds=1 + 2 * n) for n in range(6)])
    templates += due_meanwhile
    hosts.net.cut(scheduler_host)
    # The worst case, every run: the lost host held rq-scheduler's lock when it was cut. A pass holds it for
    # a few milliseconds, so a cut rarely lands in one; the lock is taken here as the lost scheduler takes it
    # (set if free, with its expiry), and the standby must wait it out.
    wait_for(lambda: redis.set(Scheduler.scheduler_lock_key, time.time(), ex=LOCK_SECONDS, nx=True), timeout=30,
             interval=0.001, message="rq-scheduler's lock free, to hold it for the lost host")
    wait_for(lambda: any(f.tick_at >= cut_time + TAKEOVER and f.status == "succeeded"
                         for f in firings(app, tick_task)), timeout=90, interval=0.2,
             message="ticks fired by the standby after the scheduler host was cut off")
    wait_for(lambda: len(opened(app, due_meanwhile)) == len(due_meanwhile), timeout=30,
             message="the recurring tickets that came due while the scheduler host was cut off")

    def lost_scheduler_stale():
        done, seen = hosts.ping()
        ages = seen["scheduler"]
        return done.returncode == 0 and ages.get(web_host.name, 99) < 3 and ages.get(scheduler_host.name, 0) > 5
    wait_for(lost_scheduler_stale, timeout=60, interval=0.5,
             message="ping: the standby's heartbeat fresh, the lost scheduler's stale")

    hosts.net.heal(scheduler_host)
    wait_for(lambda: scheduler_ages(redis).get(scheduler_host.name, 99) < 2, timeout=90, interval=0.2,
             message="the scheduler host's scheduler beating again once its link is back")
    healed = datetime.now(UTC)
    wait_for(lambda: any(f.tick_at >= healed + timedelta(seconds=3) for f in firings(app, tick_task)),
             timeout=30, message="ticks with both schedulers back")
    for scheduler in schedulers:
        procs.kill(scheduler, signal.SIGTERM)  # no new ticks from here on
    wait_for(lambda: queues_idle(redis), timeout=60, interval=0.2, message="the last jobs to run")
    wait_for(lambda: all(f.status not in ("running", "retrying") for f in firings(app, tick_task)), timeout=30,
             message="every firing to finish")

    # Every tick once, none missing, across both cuts and the heal.
    rows = firings(app, tick_task)
    ticks = [f.tick_at for f in rows]
    assert ticks[0] < cut_time < cut_time + TAKEOVER < ticks[-1]
    assert len(ticks) == len(set(ticks))
    gaps = Counter((b - a).total_seconds() for a, b in zip(ticks, ticks[1:], strict=False))
    assert set(gaps) == {1.0}, gaps  # none missing, none extra
    assert {f.status for f in rows} == {"succeeded"}, Counter(f.status for f in rows)
    # The ticks due while the lost host's lock held ran late, once it lapsed: the standby did wait for it.
    late = max((f.claimed_at - f.tick_at).total_seconds() for f in rows if cut_time <= f.tick_at <= cut_time + TAKEOVER)
    assert late > LOCK_SECONDS - 3, f"no tick waited for the lost host's lock (the latest started {late:.1f}s late)"
    body_runs = Counter(v.decode() for v in redis.lrange("ticks", 0, -1))
    assert set(body_runs) == {f.job_id for f in rows}
    assert set(body_runs.values()) == {1}, [j for j, n in body_runs.items() if n > 1]
    attempts = defaultdict(list)
    for run in job_runs(app, task_name="t.count"):
        attempts[run.job_id].append(run.status)
    for job, statuses in attempts.items():
        assert statuses.count("succeeded") == 1 and set(statuses) <= {"succeeded", "skipped"}, (job, statuses)

    # Every recurring template opened one ticket.
    assert opened(app, templates) == Counter(dict.fromkeys(templates, 1))

    # Every email once: the web's ticket emails and one assignment email per recurring ticket.
    def all_sent() -> bool:
        rows_now = outbox(app)
        assert "failed" not in {r.status for r in rows_now}, [(r.id, r.status, r.last_error) for r in rows_now]
        return len(rows_now) == WEB_TICKETS + len(templates) and all(r.status == "sent" for r in rows_now)
    wait_for(all_sent, timeout=60, interval=0.2, message="every outbox row sent")
    wait_for(lambda: queues_idle(redis), timeout=60, interval=0.2, message="no send job left")
    emails = outbox(app)
    assert Counter(r.kind for r in emails) == {"ticket_created": WEB_TICKETS, "ticket_assigned": len(templates)}
    received = Counter(int(MESSAGE_ID.match(m["Message-ID"]).group(1)) for m in hosts.mail.messages)
    assert received == Counter(r.id for r in emails), received
    assert scalar(app, sa.select(sa.func.count(Ticket.id)).where(Ticket.title.like("Web %"))) == WEB_TICKETS
    duplicates = sum(len(s) - 1 for s in attempts.values())
    print(f"{len(ticks)} ticks over {(ticks[-1] - ticks[0]).total_seconds():.0f}s, {duplicates} duplicate "
          f"deliveries recorded as skipped, the latest started {late:.1f}s after its tick (the lost host's "
          f"lock); {len(templates)} recurring tickets; {len(emails)} emails")
