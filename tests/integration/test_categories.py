"""Categories: existing ones suggested, a new spelling of one takes the existing spelling, the filter
ignores case. Also the requester's address in the sidebar."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from itsm.extensions import db
from itsm.tickets import categories
from itsm.tickets.models import Ticket
from tests import factories


@pytest.fixture
def form(ids):
    def build(**overrides) -> dict:
        values = {"title": "Mouse broken", "description": "", "priority": "2", "column_id": str(ids.columns["New"]),
                  "assignee_id": "0", "requester_email": "", "category": "hardware"}
        values.update(overrides)
        return values
    return build


def drifted(title: str, category: str) -> int:
    """A ticket whose category was spelled as typed, as before categories were matched on save."""
    ticket = factories.make_ticket(title)
    db.session.execute(sa.update(Ticket).where(Ticket.id == ticket.id).values(category=category))
    db.session.commit()
    return ticket.id


def category_of(app, ticket_id: int) -> str:
    with app.app_context():
        return db.session.get(Ticket, ticket_id).category


def newest(app) -> Ticket:
    with app.app_context():
        return db.session.scalar(sa.select(Ticket).order_by(Ticket.id.desc()).limit(1))


def test_existing_categories_are_suggested_once_each(app, client, auth):
    with app.app_context():
        for name in ("Hardware", "Network", "hardware", "Hardware", "Access"):
            drifted(name, name)
    auth.login()
    for url in ("/tickets/new", "/tickets"):
        page = client.get(url).get_data(as_text=True)
        datalist = page[page.index('<datalist id="categories">'):]
        options = re.findall(r'<option value="([^"]*)">', datalist[:datalist.index("</datalist>")])
        assert options == ["Access", "Hardware", "Network"], url
        assert 'list="categories"' in page


def test_a_category_equal_ignoring_case_takes_the_existing_spelling(app, auth, form):
    with app.app_context():
        factories.make_ticket(category="Hardware")
    auth.login()
    assert auth.post("/tickets/new", form(category="  HARDWARE ")).status_code == 302
    assert newest(app).category == "Hardware"
    assert auth.post("/tickets/new", form(category="Printers")).status_code == 302
    assert newest(app).category == "Printers"  # a new one keeps what was typed
    ticket_id = newest(app).id
    assert auth.post(f"/tickets/{ticket_id}/edit", form(category="hardware")).status_code == 302
    assert category_of(app, ticket_id) == "Hardware"


def test_saving_a_ticket_unchanged_keeps_its_own_spelling(app, auth, form):
    """Only a changed category is matched: saving an old ticket as it is records no change."""
    with app.app_context():
        old = drifted("Mouse broken", "hardware")
        for _ in range(2):
            drifted("Other", "Hardware")
    auth.login()
    response = auth.post(f"/tickets/{old}/edit", form(category="hardware"), follow_redirects=True)
    assert "Nothing changed." in response.get_data(as_text=True)
    assert category_of(app, old) == "hardware"


def test_the_list_filter_ignores_case(app, client, auth):
    with app.app_context():
        drifted("Old spelling", "hardware")
        drifted("New spelling", "Hardware")
        drifted("Umlaut", "Übersetzung")
        drifted("Other", "Network")
    auth.login()
    for query in ("hardware", "HARDWARE", " Hardware "):
        page = client.get("/tickets", query_string={"category": query}).get_data(as_text=True)
        titles = re.findall(r'href="/tickets/\d+">([^<]+)</a>', page)
        assert sorted(titles) == ["New spelling", "Old spelling"], query
        assert "2 tickets" in page
    page = client.get("/tickets", query_string={"category": "übersetzung"}).get_data(as_text=True)
    assert re.findall(r'href="/tickets/\d+">([^<]+)</a>', page) == ["Umlaut"]  # beyond ASCII on SQLite too
    assert client.get("/tickets", query_string={"category": "x" * 81}).status_code == 400


def test_the_known_categories_are_read_from_the_newest_tickets_only(app, monkeypatch):
    """The look-up is bounded (no index on category): a spelling only older tickets use is not matched."""
    monkeypatch.setattr(categories, "WINDOW", 3)
    with app.app_context():
        drifted("Old", "Legacy")
        for name in ("Hardware", "Network", "hardware"):
            drifted(name, name)
        assert categories.known() == ["hardware", "Network"]  # one Hardware left in the window, tie: the latest
        assert categories.canonical("legacy") == "legacy"
        assert categories.canonical("NETWORK") == "Network"


@pytest.mark.parametrize("page", ["ticket", "template"])
def test_the_requester_address_breaks_only_before_the_at_and_carries_its_full_text(app, client, auth, page):
    address = "margarethe.von-schleswig@facilities.example-corporation.com"
    with app.app_context():
        if page == "ticket":
            ticket_id = factories.make_ticket(requester_email=address).id
        else:
            from datetime import UTC, datetime
            ticket_id = factories.make_template(start=datetime(2027, 1, 4, 9, tzinfo=UTC),
                                                recurrence_interval="weekly",
                                                ticket_fields={"requester_email": address}).id
    auth.login()
    html = client.get(f"/tickets/{ticket_id}").get_data(as_text=True)
    assert (f'<dd><span class="address" title="{address}"><span class="part">margarethe.von-schleswig</span>'
            '<wbr><span class="part">@facilities.example-corporation.com</span></span></dd>') in html
