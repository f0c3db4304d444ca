"""The profile page: display name, time zone and password, each refused with a message next to its field."""

from __future__ import annotations

import re
from html import unescape

import pytest

from itsm.extensions import db
from itsm.users.models import User
from tests import factories
from tests.conftest import AuthActions

NEW_PASSWORD = "a-much-longer-passphrase"


def user(user_id: int) -> User:
    db.session.expire_all()
    return db.session.get(User, user_id)


def field_errors(html: str) -> dict[str, list[str]]:
    """Each error paragraph by the id of the field it belongs to (the forms macro writes "<id>-error")."""
    found: dict[str, list[str]] = {}
    for field, message in re.findall(r'<p class="error" id="([^"]+)-error">([^<]+)</p>', html):
        found.setdefault(field, []).append(unescape(message))
    return found


def details(auth, **values):
    return auth.post("/profile/details", {f"details-{k}": v for k, v in values.items()})


def password(auth, current, new, confirm=None):
    return auth.post("/profile/password", {"password-current": current, "password-new": new,
                                           "password-confirm": new if confirm is None else confirm})


def test_the_page_offers_the_known_zones_and_the_desks_default(app, client, auth):
    auth.login_agent()
    page = client.get("/profile").get_data(as_text=True)
    options = re.findall(r'<option (?:selected )?value="([^"]*)"', page.split('id="details-time_zone"')[1]
                         .split("</select>")[0])
    assert options[0] == "" and "Europe/Berlin" in options and "localtime" not in options
    assert '<option selected value="">The desk&#39;s zone (UTC)</option>' in page
    assert 'value="Alan Agent"' in page


def test_display_name_and_time_zone_are_saved(app, ids, client, auth):
    auth.login_agent()
    response = details(auth, name="  Alan the Agent ", time_zone="Europe/Berlin")
    assert response.status_code == 302
    page = client.get("/profile").get_data(as_text=True)
    assert "Profile saved. Times are shown in Europe/Berlin." in page and "times in Europe/Berlin" in page
    assert '<option selected value="Europe/Berlin">' in page
    with app.app_context():
        assert (user(ids.agent).name, user(ids.agent).time_zone) == ("Alan the Agent", "Europe/Berlin")
    # Back to the desk's zone: nothing stored, so a change of TIME_ZONE is followed.
    assert details(auth, name="", time_zone="").status_code == 302
    with app.app_context():
        assert (user(ids.agent).name, user(ids.agent).time_zone) == ("", None)
        assert user(ids.agent).display_name == "agent@example.com"


@pytest.mark.parametrize(("values", "field", "message"), [
    ({"name": "x" * 121, "time_zone": ""}, "details-name", "Use at most 120 characters."),
    ({"name": "Tab\there", "time_zone": ""}, "details-name", "no tabs or control characters"),
    ({"name": "Alan", "time_zone": "Mars/Olympus"}, "details-time_zone", "Choose a time zone from the list"),
    ({"name": "Alan", "time_zone": "localtime"}, "details-time_zone", "Choose a time zone from the list"),
    ({"name": "Alan", "time_zone": "europe/berlin"}, "details-time_zone", "Choose a time zone from the list"),
])
def test_bad_details_are_refused_next_to_the_field_and_change_nothing(app, ids, auth, values, field, message):
    auth.login_agent()
    response = details(auth, **values)
    assert response.status_code == 400
    errors = field_errors(response.get_data(as_text=True))
    assert list(errors) == [field] and message in errors[field][0]
    with app.app_context():
        assert (user(ids.agent).name, user(ids.agent).time_zone) == ("Alan Agent", None)


@pytest.mark.parametrize(("current", "new", "confirm", "field", "message"), [
    ("wrong-password-here", NEW_PASSWORD, None, "password-current", "That is not your current password."),
    ("", NEW_PASSWORD, None, "password-current", "Enter your current password."),
    (factories.PASSWORD, "short", None, "password-new", "Password must be at least 10 characters."),
    (factories.PASSWORD, "x" * 257, None, "password-new", "Password must be at most 256 characters."),
    (factories.PASSWORD, factories.PASSWORD, None, "password-new", "That is your current password"),
    (factories.PASSWORD, NEW_PASSWORD, "something-else-entirely", "password-confirm", "The two new passwords differ."),
])
def test_bad_password_changes_are_refused_next_to_the_field(app, ids, client, auth, current, new, confirm, field,
                                                            message):
    auth.login_agent()
    response = password(auth, current, new, confirm)
    assert response.status_code == 400
    errors = field_errors(response.get_data(as_text=True))
    assert field in errors and message in errors[field][0], errors
    with app.app_context():
        assert user(ids.agent).check_password(factories.PASSWORD)
    assert client.get("/profile").status_code == 200  # still logged in


def test_a_new_password_keeps_this_login_and_ends_the_others(app, ids, client, auth):
    other = app.test_client()
    AuthActions(other).login_agent()
    assert other.get("/profile").status_code == 200
    auth.login_agent()
    response = password(auth, factories.PASSWORD, NEW_PASSWORD)
    assert response.status_code == 302
    page = client.get("/profile", follow_redirects=True).get_data(as_text=True)
    assert "Your password has been changed. Every other login session of yours has ended." in page
    assert other.get("/profile").status_code == 302  # the other browser is logged out
    with app.app_context():
        assert user(ids.agent).check_password(NEW_PASSWORD) and not user(ids.agent).check_password(factories.PASSWORD)
    auth.logout()
    fresh = app.test_client()
    assert AuthActions(fresh).login("agent@example.com", NEW_PASSWORD).status_code == 302


def test_email_preferences_still_save_from_the_same_page(app, ids, auth):
    auth.login_agent()
    assert auth.post("/profile", {"notify_assigned": "y"}).status_code == 302
    assert auth.post("/profile", {}).status_code == 302
    with app.app_context():
        assert user(ids.agent).notify_assigned is False
