"""REDIS_URL (plain or redis+sentinel) and the separate Sentinel settings: parsed and checked at startup."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis.sentinel import SentinelConnectionPool
from redis_sentinel_url import parse_sentinel_url as dashboard_parse

from itsm.config import ConfigError, RedisTarget, load_config, redis_target
from itsm.extensions import REDIS_OPTIONS, WORKER_OPTIONS, make_redis

ROOT = Path(__file__).resolve().parents[2]


def target(tmp_path, **env) -> RedisTarget:
    return redis_target(load_config(str(tmp_path), env=env))


@pytest.mark.parametrize(
    ("url", "sentinels", "service", "db", "password"),
    [
        ("redis+sentinel://10.0.0.1:26379,10.0.0.2:26380/mymaster/3", (("10.0.0.1", 26379), ("10.0.0.2", 26380)),
         "mymaster", 3, None),
        ("redis+sentinel://s1,s2:5000/mymaster", (("s1", 26379), ("s2", 5000)), "mymaster", 0, None),
        ("redis+sentinel://:p%40ss@s1:26379/mymaster/0", (("s1", 26379),), "mymaster", 0, "p@ss"),
        ("redis+sentinel://s1:26379/mymaster/", (("s1", 26379),), "mymaster", 0, None),
    ],
)
def test_sentinel_urls_are_parsed(tmp_path, url, sentinels, service, db, password):
    found = target(tmp_path, REDIS_URL=url)
    assert (found.sentinels, found.service, found.db, found.password) == (sentinels, service, db, password)
    assert found.is_sentinel and "p@ss" not in found.display() and "p%40ss" not in found.display()
    # rq-dashboard reads the same URL (its redis_sentinel_url grammar) the same way, the password given apart.
    settings = found.dashboard_settings()
    parsed = dashboard_parse(settings["RQ_DASHBOARD_REDIS_URL"],
                             client_options={"password": settings["RQ_DASHBOARD_REDIS_PASSWORD"]})
    assert [tuple(h) for h in parsed.hosts] == list(sentinels)
    assert parsed.default_client.service == service and parsed.client_options["db"] == db
    assert parsed.client_options.get("password") == password


def test_separate_settings_make_the_same_url(tmp_path):
    config = load_config(str(tmp_path), env={"REDIS_SENTINELS": "s1:26379, s2:26380",
                                              "REDIS_SENTINEL_SERVICE": "mymaster", "REDIS_SENTINEL_DB": "2",
                                              "REDIS_PASSWORD": "pw", "REDIS_SENTINEL_PASSWORD": "spw"})
    assert config["REDIS_URL"] == "redis+sentinel://s1:26379,s2:26380/mymaster/2"
    found = redis_target(config)
    assert (found.sentinels, found.service, found.db) == ((("s1", 26379), ("s2", 26380)), "mymaster", 2)
    assert (found.password, found.sentinel_password) == ("pw", "spw")
    assert load_config(str(tmp_path), env={"REDIS_SENTINELS": "s1", "REDIS_SENTINEL_SERVICE": "m"})["REDIS_URL"] \
        == "redis+sentinel://s1:26379/m/0"


def test_a_plain_url_is_one_node(tmp_path):
    found = target(tmp_path, REDIS_URL="redis://:secret@cache.internal:6380/4")
    assert not found.is_sentinel and found.display() == "redis://cache.internal:6380/4"
    assert target(tmp_path).display() == "redis://localhost:6379/0"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL must start with redis://, rediss://, unix:// or redis+sentinel"),
        ({"REDIS_URL": "http://cache:6379/0"}, "REDIS_URL must start with"),
        ({"REDIS_URL": "redis://cache:port/0"}, "REDIS_URL is not a Redis URL"),
        ({"REDIS_URL": "redis://cache:6379/zero"}, "the database (the path) must be a whole number"),
        ({"REDIS_URL": "redis+sentinel:///mymaster/0"}, "must list its Sentinels"),
        ({"REDIS_URL": "redis+sentinel://s1:26379"}, "must name the service"),
        ({"REDIS_URL": "redis+sentinel://s1:26379/"}, "must name the service"),
        ({"REDIS_URL": "redis+sentinel://s1:26379/mymaster/0/extra"}, "must name the service"),
        ({"REDIS_URL": "redis+sentinel://s1:26379/mymaster/first"}, "must be a whole number from 0"),
        ({"REDIS_URL": "redis+sentinel://s1:26379/mymaster/-1"}, "must be a whole number from 0"),
        ({"REDIS_URL": "redis+sentinel://s1:high/mymaster/0"}, "must list Sentinels as host:port"),
        ({"REDIS_URL": "redis+sentinel://s1:70000/mymaster/0"}, "must list Sentinels as host:port"),
        ({"REDIS_URL": "redis+sentinel://s1:26379,,s2/mymaster"}, "must list Sentinels as host:port"),
        ({"REDIS_URL": "redis+sentinel://[::1]:26379/mymaster"}, "IPv6 addresses of Sentinels are not supported"),
        ({"REDIS_URL": "redis+sentinel://user:pw@s1/mymaster"}, "takes a password only"),
        ({"REDIS_URL": "redis+sentinel://s1/mymaster/0?socket_timeout=1"}, "takes no query options"),
        ({"REDIS_SENTINELS": "s1:26379"}, "REDIS_SENTINELS needs REDIS_SENTINEL_SERVICE"),
        ({"REDIS_SENTINELS": "s1:x", "REDIS_SENTINEL_SERVICE": "m"}, "REDIS_SENTINELS must list Sentinels"),
        ({"REDIS_SENTINELS": "s1", "REDIS_SENTINEL_SERVICE": "m", "REDIS_SENTINEL_DB": "one"}, "REDIS_SENTINEL_DB"),
        ({"REDIS_SENTINEL_SERVICE": "m"}, "REDIS_SENTINEL_SERVICE is set without REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": "s1", "REDIS_SENTINEL_SERVICE": "m", "REDIS_URL": "redis://x/0"}, "both set"),
    ],
)
def test_malformed_redis_settings_are_refused_with_a_reason(tmp_path, env, message):
    with pytest.raises(ConfigError) as caught:
        load_config(str(tmp_path), env=env)
    assert message in str(caught.value.code)


def test_a_refused_url_never_shows_its_password(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(str(tmp_path), env={"REDIS_URL": "redis+sentinel://:hunter2@s1/mymaster/0/x"})
    assert "hunter2" not in str(caught.value.code)


def test_a_malformed_sentinel_url_stops_a_command_with_one_line(tmp_path):
    env = {**os.environ, "FLASK_APP": "wsgi", "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
           "REDIS_URL": "redis+sentinel://s1:26379"}
    result = subprocess.run([sys.executable, "-m", "flask", "jobs", "ping"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "itsm: configuration error: REDIS_URL: a redis+sentinel URL must name the service the Sentinels monitor, "
        "and optionally the database (redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db]), "
        "got 'redis+sentinel://s1:26379'"]


def test_clients_ask_the_sentinels_with_the_options_of_their_kind():
    """Nothing connects here: the clients are built, and ask the Sentinels at their first command."""
    config = {"REDIS_URL": "redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/mymaster/5",
              "REDIS_SENTINEL_PASSWORD": "spw"}
    shared = make_redis(config, **REDIS_OPTIONS["shared"])
    worker = make_redis(config, **WORKER_OPTIONS)
    for client in (shared, worker):
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "mymaster"
        assert pool.connection_kwargs["db"] == 5 and pool.connection_kwargs["password"] == "pw"
        sentinels = pool.sentinel_manager.sentinels
        assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [1, 2]
        assert all(s.connection_pool.connection_kwargs["password"] == "spw" for s in sentinels)
        assert all(s.connection_pool.connection_kwargs["socket_timeout"] == 1 for s in sentinels)
    assert shared.connection_pool.connection_kwargs["socket_timeout"] == 5
    assert worker.connection_pool.connection_kwargs.get("socket_timeout") is None  # blocking dequeues
    assert worker.connection_pool.connection_kwargs["socket_keepalive"] is True
