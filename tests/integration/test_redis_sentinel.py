"""Every Redis client on ``REDIS_URL=redis+sentinel://...`` against real Sentinels (``tests.sentinel``): the web,
the commands, /readyz, the automation dashboard, rq-dashboard, the maintenance flag and the login limit; and
one clear line when the Sentinels know no such service or none answers."""

from __future__ import annotations

import pytest

from itsm import maintenance
from itsm.auth.throttle import PREFIX
from itsm.extensions import redis_client, worker_redis
from tests.conftest import TEST_REDIS_URL, service_missing
from tests.jobtasks import add
from tests.mailserver import free_port
from tests.sentinel import SERVICE, SentinelCluster, redis_server

TOKEN = "sentinel-readyz"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if redis_server() is None:
        service_missing("redis-server (Debian's redis-server package) runs the Sentinels")
    deployment = SentinelCluster(tmp_path_factory.mktemp("sentinel"))
    deployment.start()
    yield deployment
    deployment.stop()


def dead_sentinels() -> str:
    return f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{free_port()}/{SERVICE}/0"


@pytest.fixture
def app_config(request, cluster):
    url = cluster.url()
    if "unknown_service" in request.node.name:
        url = cluster.url(service="no-such-master")
    elif "no_sentinel" in request.node.name:
        url = dead_sentinels()
    elif "plain_url" in request.node.name:
        url = TEST_REDIS_URL
    return {"REDIS_URL": url, "READYZ_TOKEN": TOKEN}


@pytest.fixture
def master(cluster):
    client = cluster.master.client()
    client.flushall()
    yield client
    client.flushall()
    client.close()


def test_every_client_uses_the_master_the_sentinels_name(app, client, auth, master, cluster):
    node = f"127.0.0.1:{cluster.master.port}"
    with app.app_context():
        for kind in ("shared", "probe"):
            redis_client(kind=kind).set(f"written-by-{kind}", 1)
        worker = worker_redis(app)
        worker.set("written-by-worker", 1)
        worker.close()
        maintenance.switch_on("test")
        assert maintenance.current().on and maintenance.current().source == "redis"
        maintenance.switch_off("test")
    assert master.exists("written-by-shared", "written-by-probe", "written-by-worker") == 3
    assert master.exists(maintenance.KEY)
    # A wrong password is counted where every web process sees it: on the master.
    response = client.post("/login", data={"email": "admin@example.com", "password": "wrong",
                                           "csrf_token": auth.csrf()})
    assert response.status_code == 400 and "Email or password is incorrect." in response.get_data(as_text=True)
    assert list(master.scan_iter(f"{PREFIX}:*"))

    body = client.get(f"/readyz?token={TOKEN}").get_json()["checks"]["redis"]
    assert body["ok"] and body["node"] == node and body["service"] == SERVICE and body["role"] == "master"
    auth.login()
    page = client.get("/admin/automation").get_data(as_text=True)
    assert f"Redis: <code>{node}</code>, the master of <code>{SERVICE}</code>" in page
    # rq-dashboard reads the same URL.
    with app.app_context():
        add.delay(1, 2)
    queues = client.get("/admin/rq/0/data/queues.json").get_json()["queues"]
    assert next(q for q in queues if q["name"] == "default")["count"] == 1


def test_a_plain_url_shows_its_node(app, client, redis):
    """The same /readyz field for one Redis without Sentinel: the node of the URL."""
    body = client.get(f"/readyz?token={TOKEN}").get_json()["checks"]["redis"]
    host_port = TEST_REDIS_URL.split("//")[1].rsplit("/", 1)[0]
    assert body["ok"] and body["node"] == host_port and "service" not in body


def test_an_unknown_service_is_one_clear_line(app, client, auth, cluster):
    body = client.get(f"/readyz?token={TOKEN}")
    assert body.status_code == 503
    redis = body.get_json()["checks"]["redis"]
    assert not redis["ok"] and redis["error"] == (
        f"MasterNotFoundError: the Redis Sentinels at {cluster.url().split('//')[1].split('/')[0]} know no master "
        "named 'no-such-master'")
    auth.login()
    page = client.get("/admin/automation")
    assert page.status_code == 200
    assert "Redis is unreachable (MasterNotFoundError: the Redis Sentinels at" in page.get_data(as_text=True)


def test_no_sentinel_answering_is_one_clear_line(app, client):
    response = client.get(f"/readyz?token={TOKEN}")
    assert response.status_code == 503
    error = response.get_json()["checks"]["redis"]["error"]
    assert error.startswith("MasterNotFoundError: no Redis Sentinel answers (127.0.0.1:")
    assert "Connection refused" in error and "\n" not in error


@pytest.mark.parametrize("args", [["jobs", "enqueue", "t.add", "--args", "[1, 2]"], ["worker", "--burst"],
                                  ["scheduler"], ["maintenance", "on"]])
@pytest.mark.parametrize("fault", ["unknown", "none"])
def test_commands_stop_with_one_line_when_no_master_can_be_had(procs, cluster, args, fault):
    url = cluster.url(service="no-such-master") if fault == "unknown" else dead_sentinels()
    result = procs.run(*args, REDIS_URL=url, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    shown = url.split("://")[1]
    assert f"Redis at redis+sentinel://{shown} is unreachable" in lines[0]
    assert ("know no master named 'no-such-master'" if fault == "unknown" else "no Redis Sentinel answers") in lines[0]
