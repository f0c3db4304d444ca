"""Real worker processes for tests, and waiting on conditions instead of sleeping."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wait_for(predicate, timeout: float = 45.0, interval: float = 0.05, message: str = "condition"):
    """Poll until ``predicate()`` is truthy; return its value or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def process_env(database_url: str, redis_url: str, **extra: str) -> dict:
    env = dict(os.environ)
    env.update({
        "FLASK_APP": "wsgi", "ITSM_ENV": "testing", "SECRET_KEY": "test-secret", "DATABASE_URL": database_url,
        "REDIS_URL": redis_url, "JOBS_IMPORTS": "tests.jobtasks", "JOBS_HEARTBEAT_SECONDS": "1",
        "JOBS_MAINTENANCE_SECONDS": "1", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


class Processes:
    """Starts ``flask ...`` subprocesses in their own process groups and always stops them."""

    def __init__(self, database_url: str, redis_url: str, log_dir: Path) -> None:
        self.database_url, self.redis_url, self.log_dir = database_url, redis_url, log_dir
        self.started: list[tuple[subprocess.Popen, Path]] = []

    def start(self, *args: str, prefix: Sequence[str] = (), **env: str) -> subprocess.Popen:
        """``flask *args``; ``prefix`` is a command that runs it (one that ends by exec'ing it, so the pid is
        flask's), e.g. another machine's ``ip netns exec``."""
        log = self.log_dir / f"proc-{len(self.started)}.log"
        with log.open("w") as out:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen([*prefix, sys.executable, "-m", "flask", *args], cwd=ROOT,
                                    env=process_env(self.database_url, self.redis_url, **env),
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append((proc, log))
        return proc

    def worker(self, *args: str, **env: str) -> subprocess.Popen:
        return self.start("worker", "--concurrency", "1", *args, **env)

    def run(self, *args: str, timeout: float = 60, prefix: Sequence[str] = (),
            **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, sys.executable, "-m", "flask", *args], cwd=ROOT, capture_output=True, text=True,
                              env=process_env(self.database_url, self.redis_url, **env), timeout=timeout)

    @staticmethod
    def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc, _ in self.started:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=20)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    self.kill(proc)

    def logs(self) -> str:
        return "\n".join(f"--- {log.name} ---\n{log.read_text()}" for _, log in self.started if log.exists())
