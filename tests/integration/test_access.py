"""Every route, present and future, checked for anonymous, agent and admin access.

The table below classifies endpoints; a new endpoint that is not classified
fails the test, so nobody adds a page without deciding who may see it.
"""

from __future__ import annotations

import re

import pytest

PUBLIC = {"auth.login", "auth.logout", "auth.confirm_logout", "health.healthz", "health.readyz", "static",
          "unsubscribe.unsubscribe", "account.forgot_password", "account.reset_password", "account.accept_invitation"}
ADMIN_PREFIXES = ("admin.", "automation.", "schedules.", "holidays.", "settings.", "backups.", "outbox.", "mailboxes.",
                  "rq_dashboard.")


def classify(endpoint: str) -> str:
    if endpoint in PUBLIC:
        return "public"
    if endpoint.startswith(ADMIN_PREFIXES):
        return "admin"
    return "desk"


INTEGER_ARGUMENT = re.compile(r"<int(?:\([^)]*\))?:(\w+)>")


def concrete_urls(app, ticket_id: int, user_id: int, column_id: int, integers: str | None = None):
    """(endpoint, method, url) for every rule, with sample values for its arguments; with ``integers``,
    only the rules that take an integer, every integer argument set to that value."""
    samples = {"ticket_id": ticket_id, "user_id": user_id, "column_id": column_id, "holiday_id": 1, "message_id": 1,
               "token": "x", "instance_number": 1, "job_id": "nosuchjob", "queue_name": "default",
               "registry_name": "failed", "per_page": 8, "order": "asc", "page": 1, "path": "x.css",
               "filename": "style.css", "id": 1, "name": "x"}
    for rule in app.url_map.iter_rules():
        url = rule.rule
        values = samples
        if integers is not None:
            integer_args = INTEGER_ARGUMENT.findall(url)
            if not integer_args:
                continue
            values = {**samples, **dict.fromkeys(integer_args, integers)}
        for arg in rule.arguments:
            url = re.sub(rf"<(?:[^:<>]+:)?{arg}>", str(values.get(arg, 1)), url)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, url


@pytest.fixture
def urls(app, ids):
    from tests import factories

    with app.app_context():
        ticket_id = factories.make_ticket().id
    return list(concrete_urls(app, ticket_id, ids.agent, ids.columns["Waiting"]))


def no_error(endpoint: str, response) -> bool:
    # /readyz answers 503 by design while no scheduler runs (these tests start none).
    return response.status_code < 500 or (endpoint == "health.readyz" and response.status_code == 503)


def call(client, auth, method, url):
    data = None if method == "GET" else {"csrf_token": auth.csrf()}
    # A browser on the app's own pages sends their address (rq-dashboard's buttons rely on it).
    headers = {"Referer": "http://localhost/admin/rq/"} if method == "GET" else {"Origin": "http://localhost"}
    response = client.open(url, method=method, data=data, headers=headers)
    response.close()  # static files stream from an open file
    return response


def test_every_endpoint_is_classified(app):
    known = {"auth.", "health.", "tickets.", "recurring.", "board.", "admin.", "automation.", "schedules.",
             "holidays.", "settings.", "backups.", "outbox.", "unsubscribe.", "profile.", "static",
             "rq_dashboard.", "account.", "attachments.", "mailboxes."}
    for rule in app.url_map.iter_rules():
        assert rule.endpoint.startswith(tuple(known)), f"unclassified endpoint {rule.endpoint}"


def test_anonymous_is_sent_to_login(client, auth, urls):
    for endpoint, method, url in urls:
        response = call(client, auth, method, url)
        if classify(endpoint) == "public":
            assert no_error(endpoint, response), (endpoint, method, url, response.status_code)
            continue
        assert response.status_code == 302, (endpoint, method, url, response.status_code)
        assert response.location.startswith("/login?next="), (endpoint, url, response.location)


def test_agent_gets_403_on_admin_pages(client, auth, urls):
    auth.login_agent()
    for endpoint, method, url in urls:
        if endpoint == "auth.logout":
            continue
        response = call(client, auth, method, url)
        assert no_error(endpoint, response), (endpoint, method, url, response.status_code)
        if classify(endpoint) == "admin":
            assert response.status_code == 403, (endpoint, method, url, response.status_code)
        else:
            assert response.status_code != 403, (endpoint, method, url)
            assert not (response.location or "").startswith("/login"), (endpoint, url)


def test_admin_reaches_everything(client, auth, urls):
    auth.login()
    for endpoint, method, url in urls:
        if endpoint == "auth.logout":
            continue
        response = call(client, auth, method, url)
        assert no_error(endpoint, response), (endpoint, method, url, response.status_code)
        assert response.status_code != 403, (endpoint, method, url)
        assert not (response.location or "").startswith("/login"), (endpoint, url)


def test_deactivated_user_loses_access(app, client, auth, ids):
    from itsm.extensions import db
    from itsm.users.models import User

    auth.login_agent()
    assert client.get("/board").status_code == 200
    with app.app_context():
        db.session.get(User, ids.agent).active = False
        db.session.commit()
    assert client.get("/board").status_code == 302
