"""Integer ids in URLs beyond the database's INTEGER range, on every route that takes one.

PostgreSQL's integer is 32-bit: comparing an id column with 2**31 raises "integer out of range",
which used to end every such page and action in a 500. The app's ``int`` URL converter is bounded
to the range, so an id no row can have is a 404 before any view runs.
"""

from __future__ import annotations

import pytest

from tests.integration.test_access import concrete_urls

pytestmark = pytest.mark.usefixtures("redis")

# For the cases that do not depend on the database engine: the SQLite run only.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
OUT_OF_RANGE = (str(2**31), "99999999999", str(10**30), "9" * 5000)


@sqlite_only
def test_the_url_map_has_integer_routes_of_every_kind(app):
    endpoints = {endpoint for endpoint, _, _ in concrete_urls(app, 1, 1, 1, integers=str(2**31))}
    assert {"tickets.detail", "tickets.edit", "automation.run_detail", "schedules.edit", "schedules.history",
            "admin.edit_user", "outbox.retry", "rq_dashboard.job_view"} <= endpoints


@pytest.mark.parametrize("value", OUT_OF_RANGE, ids=["2**31", "11-digits", "10**30", "5000-digits"])
def test_an_id_out_of_the_integer_range_is_a_404_everywhere(client, auth, dump, value):
    auth.login()
    before = dump.fingerprint()
    wrong = []
    for endpoint, method, url in concrete_urls(client.application, 1, 1, 1, integers=value):
        response = client.open(url, method=method, data={"csrf_token": auth.csrf()} if method == "POST" else None,
                               headers={"Origin": "http://localhost"})
        if response.status_code != 404:
            wrong.append((endpoint, method, url[:80], response.status_code))
    assert not wrong
    assert dump.fingerprint() == before


def test_the_largest_integer_is_still_an_id(client, auth):
    """2**31 - 1 fits: it reaches the view, which finds no such row."""
    auth.login()
    for url in ("/tickets/2147483647", "/tickets/2147483647/edit", "/admin/automation/runs/2147483647",
                "/admin/schedules/2147483647/edit", "/admin/schedules/2147483647/history"):
        assert client.get(url).status_code == 404, url
    assert client.get("/tickets/1/edit").status_code == 404  # (no ticket 1 either: the test desk has none)
