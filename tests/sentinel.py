"""A real Redis Sentinel deployment for tests: a master, one replica and three Sentinels on free loopback
ports in a temporary folder (``redis-server`` and ``redis-server --sentinel``), with short failure timeouts.

The replica replicates as its own ACL user, so ``cut_replication()`` can stop it receiving the master's
writes while every other client goes on: what the master accepts from then on is the replication gap a
failover loses. Every process it starts is stopped by ``stop()``, also when starting failed.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from tests.mailserver import free_port
from tests.processes import wait_for

SERVICE = "itsm-test"
REPL_USER, REPL_PASSWORD = "replication", "replication-secret"
# A master not answering this long is down for a Sentinel; a replica cut off from it for ten times as long
# (cut_replication) is no longer promoted.
DOWN_AFTER_MS = 1500
FAILOVER_TIMEOUT_MS = 4000


def redis_server() -> str | None:
    return shutil.which("redis-server")


class Node:
    def __init__(self, name: str, folder: Path, conf: str, sentinel: bool = False) -> None:
        self.name, self.port = name, free_port()
        self.folder = folder / name
        self.folder.mkdir(parents=True)
        self.conf = self.folder / f"{name}.conf"
        self.conf.write_text(f"port {self.port}\nbind 127.0.0.1\nprotected-mode no\ndir {self.folder}\n"
                             f"logfile {self.folder / 'log.txt'}\n" + conf.format(port=self.port))
        self.sentinel = sentinel
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        args = [redis_server(), str(self.conf)] + (["--sentinel"] if self.sentinel else [])
        self.proc = subprocess.Popen(args, cwd=self.folder, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def client(self) -> Redis:
        return Redis("127.0.0.1", self.port, socket_connect_timeout=1, socket_timeout=2)

    def answers(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, f"{self.name} exited: {self.log()}"
        try:
            with self.client() as client:
                return bool(client.ping())
        except RedisError:
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log(self) -> str:
        path = self.folder / "log.txt"
        return path.read_text()[-3000:] if path.exists() else ""


DATA_NODE = ("save \"\"\nappendonly no\nrepl-diskless-sync yes\nrepl-diskless-sync-delay 0\n"
             "user default on nopass ~* &* +@all\n"
             f"user {REPL_USER} on >{REPL_PASSWORD} ~* &* +@all\n")


class SentinelCluster:
    def __init__(self, folder: Path) -> None:
        self.master = Node("master", folder, DATA_NODE)
        self.replica = Node("replica", folder, DATA_NODE + f"replicaof 127.0.0.1 {self.master.port}\n"
                            f"masteruser {REPL_USER}\nmasterauth {REPL_PASSWORD}\n")
        monitor = (f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} 2\n"
                   f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                   f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
                   f"sentinel parallel-syncs {SERVICE} 1\n")
        self.sentinels = [Node(f"sentinel{n}", folder, monitor, sentinel=True) for n in (1, 2, 3)]

    @property
    def nodes(self) -> list[Node]:
        return [self.master, self.replica, *self.sentinels]

    def url(self, service: str = SERVICE, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{service}/{db}"

    def start(self) -> None:
        try:
            for node in (self.master, self.replica):
                node.start()
            for node in (self.master, self.replica):
                wait_for(node.answers, timeout=20, message=f"redis {node.name} to answer")
            wait_for(lambda: self.link_up(self.replica), timeout=20, message="the replica in sync")
            for node in self.sentinels:
                node.start()
            wait_for(self.settled, timeout=30, interval=0.1,
                     message="every Sentinel to know the master, the replica and the two other Sentinels")
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def link_up(node: Node) -> bool:
        with node.client() as client:
            return client.info("replication").get("master_link_status") == "up"

    def settled(self) -> bool:
        for node in self.sentinels:
            if not node.answers():
                return False
            with node.client() as client:
                master = client.sentinel_master(SERVICE)
                replicas = client.sentinel_slaves(SERVICE)
            if master["num-other-sentinels"] != 2 or not master["is_master"] or master["is_sdown"] \
                    or len(replicas) != 1 or replicas[0]["is_sdown"]:
                return False
        return True

    def master_ports(self) -> set[int]:
        """The master's port as each Sentinel names it now."""
        ports = set()
        for node in self.sentinels:
            with node.client() as client:
                ports.add(int(client.sentinel_get_master_addr_by_name(SERVICE)[1]))
        return ports

    def cut_replication(self) -> None:
        """The replica stops receiving the master's writes (it cannot log in to it again); clients go on."""
        with self.master.client() as client:
            client.acl_setuser(REPL_USER, enabled=False, reset=False)
            client.client_kill_filter(_type="replica")
            wait_for(lambda: client.info("replication")["connected_slaves"] == 0, timeout=10,
                     message="the master to have no replica")

    def promoted(self) -> bool:
        """The replica is the master, and every Sentinel names it."""
        with self.replica.client() as client:
            role = client.info("replication")["role"]
        return role == "master" and self.master_ports() == {self.replica.port}

    def stop(self) -> None:
        for node in self.nodes:
            node.kill(signal.SIGTERM)

    def logs(self) -> str:
        return "\n".join(f"--- {node.name} ---\n{node.log()}" for node in self.nodes)
