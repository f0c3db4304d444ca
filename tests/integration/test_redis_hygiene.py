"""The suite leaves nothing in Redis: each test process empties its own database when its run ends."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT, TEST_REDIS_URL


def test_a_test_run_leaves_its_redis_database_empty(redis):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["TEST_REDIS_URL"] = TEST_REDIS_URL  # this process's own database, as the inner run's first
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                          "tests/redis_left_behind.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout
    assert redis.dbsize() == 0, sorted(redis.keys())
