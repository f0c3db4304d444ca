"""rq-dashboard at /admin/rq: admins only, on REDIS_URL, and its buttons only from the app's own pages."""

from __future__ import annotations

from rq import Queue
from rq.registry import FailedJobRegistry

from tests.processes import wait_for

SAME_SITE = {"Origin": "http://localhost"}


def failed_job(app, procs, redis) -> str:
    from tests.jobtasks import always_fails

    with app.app_context():
        handle = always_fails.delay("rq-dash")
    procs.run("worker", "--burst", "--concurrency", "1")
    registry = FailedJobRegistry(queue=Queue("default", connection=redis))
    wait_for(lambda: handle.id in registry.get_job_ids(), timeout=30, message="the failed job")
    return handle.id


def test_admin_sees_queues_workers_and_jobs(app, client, auth, procs, redis):
    job_id = failed_job(app, procs, redis)
    auth.login()
    page = client.get("/admin/rq/")
    assert page.status_code == 200 and "RQ" in page.get_data(as_text=True)
    queues = client.get("/admin/rq/0/data/queues.json").get_json()["queues"]
    assert "default" in {q["name"] for q in queues}
    assert next(q for q in queues if q["name"] == "default")["failed_job_registry_count"] == 1
    job = client.get(f"/admin/rq/0/data/job/{job_id}.json").get_json()
    assert job["id"] == job_id and "still broken" in job["exc_info"]
    css = client.get("/admin/rq/static/css/main.css")
    css.close()
    assert css.status_code == 200
    assert client.get("/admin/rq/5/view/queues").status_code == 404  # one Redis, never a 500


def test_buttons_need_an_admin_on_this_site(app, client, auth, procs, redis):
    job_id = failed_job(app, procs, redis)
    registry = FailedJobRegistry(queue=Queue("default", connection=redis))
    assert client.post(f"/admin/rq/job/{job_id}/requeue", headers=SAME_SITE).status_code == 302  # to /login
    auth.login_agent()
    assert client.post(f"/admin/rq/job/{job_id}/requeue", headers=SAME_SITE).status_code == 403
    auth.logout()
    auth.login()
    # Another site's page (or none) cannot press the button for an admin.
    assert client.post(f"/admin/rq/job/{job_id}/requeue", headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.post(f"/admin/rq/job/{job_id}/requeue").status_code == 403
    assert client.get("/admin/rq/requeue/default").status_code == 403
    assert job_id in registry.get_job_ids()
    response = client.post(f"/admin/rq/job/{job_id}/requeue", headers=SAME_SITE)
    assert response.status_code == 200 and response.get_json()["status"] == "OK"
    assert job_id not in registry.get_job_ids()
    assert job_id in Queue("default", connection=redis).get_job_ids()
    gone = client.post("/admin/rq/job/no-such-job/requeue", headers=SAME_SITE)
    assert gone.status_code == 404
