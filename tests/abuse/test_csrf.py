"""CSRF on every POST route, generated from the URL map.

Flask-WTF guards every POST: without a token (or with someone else's) the answer is 400 and
nothing changes. rq-dashboard's routes (/admin/rq) are exempt from Flask-WTF by design (its
JavaScript posts without tokens); itsm.rq_admin makes them require a same-origin Origin or
Referer instead, so a cross-site request gets 403 there.
"""

from __future__ import annotations

import pytest

from itsm.rq_admin import CHANGING_GETS
from tests.integration.test_access import concrete_urls

CROSS_SITE = {"Origin": "https://evil.example", "Referer": "https://evil.example/page"}


@pytest.fixture
def database_url(sqlite_url):
    """Nothing here depends on the database engine (the fuzzing runs on both): SQLite only."""
    return sqlite_url


@pytest.fixture
def post_urls(app, seeded):
    urls = concrete_urls(app, seeded.ticket, seeded.agent, seeded.column)
    return [(endpoint, url) for endpoint, method, url in urls if method == "POST"]


def test_the_url_map_has_post_routes_on_both_sides(post_urls):
    endpoints = {endpoint for endpoint, _ in post_urls}
    assert len(endpoints) > 30 and "auth.login" in endpoints and "rq_dashboard.requeue_job_view" in endpoints


@pytest.mark.parametrize("who", ["anonymous", "agent", "admin"])
def test_every_post_without_a_token_is_refused(client, auth, dump, post_urls, who, redis):
    if who != "anonymous":
        auth.login("agent@example.com" if who == "agent" else "admin@example.com")
    before = dump()
    for endpoint, url in post_urls:
        if endpoint.startswith("rq_dashboard."):
            continue
        # A same-site browser would send these; only the token is missing.
        response = client.post(url, data={"next": "/board"}, headers={"Origin": "http://localhost"})
        assert response.status_code == 400, (who, endpoint, url, response.status_code)
        assert "security token" in response.get_data(as_text=True), (endpoint, url)
    assert dump() == before
    if who != "anonymous":
        assert client.get("/board").status_code == 200  # still logged in: the refusals changed nothing


def test_a_token_from_another_session_is_refused(app, client, auth, dump, post_urls, redis):
    from tests.conftest import AuthActions

    other = AuthActions(app.test_client())
    stolen = other.csrf()
    auth.login()
    before = dump()
    for endpoint, url in post_urls:
        if endpoint.startswith("rq_dashboard."):
            continue
        for token in (stolen, "", "x" * 500, stolen[:-2]):
            response = client.post(url, data={"csrf_token": token}, headers={"Origin": "http://localhost"})
            assert response.status_code == 400, (endpoint, url, token[:20], response.status_code)
    assert dump() == before


def test_rq_dashboard_changes_need_this_site_as_origin(app, client, auth, post_urls, redis):
    from rq import Queue

    auth.login()
    queue = Queue("default", connection=redis)
    job = queue.enqueue("tests.jobtasks.add", 1, 2)
    changing = [(e, u.replace("nosuchjob", job.id)) for e, u in post_urls if e.startswith("rq_dashboard.")]
    changing += [("rq_dashboard.requeue_all", "/admin/rq/requeue/default")]  # a GET that changes things
    assert {e for e, _ in changing} >= {"rq_dashboard.delete_job_view", "rq_dashboard.empty_queue"} | CHANGING_GETS
    for endpoint, url in changing:
        method = "GET" if endpoint in CHANGING_GETS else "POST"
        for headers in (CROSS_SITE, {"Origin": "https://evil.example"}, {"Referer": "http://evil.example/"},
                        {}):
            response = client.open(url, method=method, headers=headers)
            assert response.status_code == 403, (endpoint, url, headers, response.status_code)
    assert job.id in queue.get_job_ids()  # nothing was deleted, emptied or compacted away
    # The same requests from the dashboard's own pages are not refused for want of a Flask-WTF token.
    response = client.post(f"/admin/rq/job/{job.id}/delete", headers={"Origin": "http://localhost"})
    assert response.status_code == 200 and response.get_json()["status"] == "OK"
    assert job.id not in queue.get_job_ids()
