"""Admin pages: users and board columns."""

from __future__ import annotations

import pytest
from sqlalchemy import func

from itsm.board.models import BoardColumn, ordered_columns
from itsm.extensions import db
from itsm.tickets.models import Ticket
from itsm.users.models import User
from tests import factories


def user_count() -> int:
    return db.session.scalar(db.select(func.count(User.id)))


def test_admin_creates_a_user_who_can_log_in(app, client, auth):
    auth.login()
    response = auth.post("/admin/users", {"email": "New.Person@Example.com", "name": "New Person",
                                          "role": "agent", "password": "long-enough-pw"})
    assert response.status_code == 302
    with app.app_context():
        person = factories.user("new.person@example.com")
        assert person.role == "agent" and person.password_hash != "long-enough-pw"
    auth.logout()
    auth.token = None
    auth.login("new.person@example.com", "long-enough-pw")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"email": "agent@example.com"}, "already exists"),
        ({"email": "not-an-email"}, "Enter a valid email address."),
        ({"password": "short"}, "Use between 10 and 256 characters."),
        ({"role": "superuser"}, "Not a valid choice."),
        ({"name": "n" * 121}, "Field cannot be longer than 120 characters."),
    ],
)
def test_bad_user_input_changes_nothing(app, client, auth, data, message):
    auth.login()
    with app.app_context():
        before = user_count()
    values = {"email": "someone@example.com", "name": "Some One", "role": "agent", "password": "long-enough-pw"}
    values.update(data)
    response = auth.post("/admin/users", values)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    with app.app_context():
        assert user_count() == before


def test_change_role_and_deactivate(app, client, auth, ids):
    auth.login()
    prefix = f"u{ids.agent}-"
    auth.post(f"/admin/users/{ids.agent}", {prefix + "role": "admin", prefix + "active": "y"})
    with app.app_context():
        assert db.session.get(User, ids.agent).role == "admin"
    auth.post(f"/admin/users/{ids.agent}", {prefix + "role": "agent"})  # unchecked box: inactive
    with app.app_context():
        agent = db.session.get(User, ids.agent)
        assert (agent.role, agent.active) == ("agent", False)


def test_last_admin_is_protected(app, client, auth, ids):
    auth.login()
    prefix = f"u{ids.admin}-"
    response = auth.post(f"/admin/users/{ids.admin}", {prefix + "role": "agent", prefix + "active": "y"},
                         follow_redirects=True)
    assert "last active admin" in response.get_data(as_text=True)
    response = auth.post(f"/admin/users/{ids.admin}", {prefix + "role": "admin"}, follow_redirects=True)
    assert "You cannot deactivate your own account." in response.get_data(as_text=True) \
        or "last active admin" in response.get_data(as_text=True)
    with app.app_context():
        admin = db.session.get(User, ids.admin)
        assert (admin.role, admin.active) == ("admin", True)


def test_unknown_user_is_404(client, auth):
    auth.login()
    assert auth.post("/admin/users/99999", {"u99999-role": "agent"}).status_code == 404


def test_columns_add_rename_reorder_delete(app, client, auth, ids):
    auth.login()
    assert auth.post("/admin/columns", {"name": "Review"}).status_code == 302
    duplicate = auth.post("/admin/columns", {"name": "review"})
    assert duplicate.status_code == 400 and "already exists" in duplicate.get_data(as_text=True)
    with app.app_context():
        review = db.session.scalar(db.select(BoardColumn).where(BoardColumn.name == "Review"))
        assert [c.name for c in ordered_columns()][-1] == "Review"
        review_id = review.id
    auth.post(f"/admin/columns/{review_id}/left")
    with app.app_context():
        assert [c.name for c in ordered_columns()] == ["New", "In progress", "Waiting", "Review", "Done"]
    auth.post(f"/admin/columns/{review_id}", {f"c{review_id}-name": "Peer review"})
    auth.post(f"/admin/columns/{ids.columns['New']}/left")  # already first: nothing moves
    with app.app_context():
        assert [c.name for c in ordered_columns()] == ["New", "In progress", "Waiting", "Peer review", "Done"]
    assert auth.post(f"/admin/columns/{review_id}/delete").status_code == 302
    with app.app_context():
        assert db.session.get(BoardColumn, review_id) is None


def test_column_with_tickets_cannot_be_deleted(app, client, auth, ids):
    with app.app_context():
        factories.make_ticket(column_name="Waiting")
    auth.login()
    response = auth.post(f"/admin/columns/{ids.columns['Waiting']}/delete", follow_redirects=True)
    assert "still holds 1 ticket" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(BoardColumn, ids.columns["Waiting"]) is not None


def test_the_last_done_column_stays(app, client, auth, ids):
    auth.login()
    done_id = ids.columns["Done"]
    response = auth.post(f"/admin/columns/{done_id}", {f"c{done_id}-name": "Done"}, follow_redirects=True)
    assert "at least one done column" in response.get_data(as_text=True)
    response = auth.post(f"/admin/columns/{done_id}/delete", follow_redirects=True)
    assert "at least one done column" in response.get_data(as_text=True)


def test_toggling_done_column_updates_done_at(app, client, auth, ids):
    with app.app_context():
        ticket_id = factories.make_ticket(column_name="Waiting").id
    auth.login()
    waiting = ids.columns["Waiting"]
    auth.post(f"/admin/columns/{waiting}", {f"c{waiting}-name": "Waiting", f"c{waiting}-is_done_column": "y"})
    with app.app_context():
        assert db.session.get(Ticket, ticket_id).done_at is not None
    auth.post(f"/admin/columns/{waiting}", {f"c{waiting}-name": "Waiting"})
    with app.app_context():
        assert db.session.get(Ticket, ticket_id).done_at is None


@pytest.mark.parametrize("name", ["", "x" * 61])
def test_bad_column_names(app, client, auth, name):
    auth.login()
    assert auth.post("/admin/columns", {"name": name}).status_code == 400
    with app.app_context():
        assert len(ordered_columns()) == 4
