"""Hostile values into every form field and every query parameter the app's pages use.

The forms are not listed by hand: every GET page of the URL map is rendered (anonymously for the
public pages, as an admin for the rest), its forms are read from the HTML, and each one is posted
back with hostile values in its fields and a valid CSRF token. For every answer:

- never a 5xx;
- never a payload reflected unescaped (a ``<script>`` or an event-handler attribute as written);
- a refusal (any 4xx) writes nothing: the database is the same, row for row;
- a value outside a field's closed set (a select's options, a radio group, a checkbox group) is
  never stored, even when the rest of the form is accepted;
- a GET changes nothing.
"""

from __future__ import annotations

import itertools
import re
from datetime import date, timedelta
from urllib.parse import urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.exceptions import HTTPException

from tests.abuse.conftest import page_urls
from tests.abuse.html_forms import HtmlForm, form_body, parse
from tests.abuse.payloads import SCRIPT, SWEEP, hostile_values, xss_reflected
from tests.conftest import AuthActions
from tests.integration.test_access import PUBLIC

pytestmark = pytest.mark.usefixtures("redis_url")

FUZZ = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])
_n = itertools.count(1)
SKIP_ACTIONS = ("auth.logout", "rq_dashboard.")
FORM_ENCODED = "application/x-www-form-urlencoded"


def sensible(form: HtmlForm) -> dict[str, list[str]]:
    """What a person would put into the form's empty fields (a select's first real option, text, a
    date...), unique per call so forms that create things (a user, a column, a holiday) are accepted
    more than once. Empty number fields stay empty: they are the optional ones."""
    n = next(_n)
    values = {}
    later = itertools.count()
    for name, f in form.fields.items():
        if f.values and any(v for v in f.values):
            continue
        if f.kind == "select":
            values[name] = [next((o for o in f.options if o), "")]
        elif f.kind == "email":
            values[name] = [f"fuzz{n}@example.com"]
        elif f.kind == "password":
            values[name] = [f"fuzz-password-{n:04d}"]
        elif f.kind == "date":
            values[name] = [(date(2031, 1, 1) + timedelta(days=n)).isoformat()]
        elif f.kind == "datetime-local":  # in page order, each later than the one before (start, then expiry)
            values[name] = [f"{date(2031, 1, 2) + timedelta(days=next(later)):%Y-%m-%d}T09:00"]
        elif f.kind in ("text", "search", "textarea"):
            values[name] = [f"fuzz {n}"]
    return values


class Desk:
    """An admin's browser, plus anonymous ones for the public pages."""

    def __init__(self, app, seeds, dump) -> None:
        self.app = app
        self.seeds = seeds
        self.dump = dump
        self.admin = app.test_client()
        self.auth = AuthActions(self.admin)
        self.auth.login()
        self.adapter = app.url_map.bind("localhost")
        self.posts: dict[tuple, tuple[str, str, HtmlForm]] = {}  # key -> (page endpoint, page url, form)
        self.queries: dict[str, set[str]] = {}  # path -> parameter names
        self.pages: list[tuple[str, str]] = page_urls(app, seeds)
        self.known: str | None = None  # the database's fingerprint, while nothing can have changed since
        self.full: tuple[str, str] | None = None  # (fingerprint, dump) of the last whole dump

    # -- reading the pages ---------------------------------------------------------------------
    def endpoint_of(self, path: str) -> str | None:
        try:
            return self.adapter.match(urlsplit(path).path, method="POST")[0]
        except HTTPException:  # a GET-only path, or none
            return None

    def open_page(self, endpoint: str, url: str):
        """(client, concrete url, response) for a page, as the role that uses it."""
        client = self.app.test_client() if endpoint in PUBLIC else self.admin
        real = url.replace("{token}", self.seeds.token(endpoint))
        return client, real, client.get(real)

    def discover(self) -> None:
        for endpoint, url in self.pages:
            client, real, response = self.open_page(endpoint, url)
            assert response.status_code < 500, (endpoint, real, response.status_code)
            if response.status_code != 200 or response.mimetype != "text/html":
                continue
            page = parse(response.get_data(as_text=True), real)
            path = urlsplit(real).path
            if page.paged:
                self.queries.setdefault(path, set()).add("page")
            for form in page.forms:
                if form.method == "get":
                    self.queries.setdefault(urlsplit(form.action).path, set()).update(form.fields)
                    continue
                action_endpoint = self.endpoint_of(form.action)
                if action_endpoint is None or action_endpoint.startswith(SKIP_ACTIONS):
                    continue
                # One of a kind: the per-row copies (u1-role, u2-role...) differ only in their prefix.
                key = (action_endpoint, tuple(sorted(re.sub(r"^[a-z]\d+-", "", name) for name in form.fields)))
                if key not in self.posts:
                    form.action = form.action.replace(real, url)  # a token page: a fresh token each time
                    self.posts[key] = (endpoint, url, form)
            for link in page.links:  # a list's own links: ?mine=1, ?status=failed...
                parts = urlsplit(link)
                if parts.path == path and parts.query:
                    self.queries.setdefault(path, set()).update(
                        pair.split("=", 1)[0] for pair in parts.query.split("&"))

    # -- attacking them ------------------------------------------------------------------------
    def state(self) -> str:
        """The database's fingerprint now: the one taken after the last request when that one wrote nothing."""
        known, self.known = self.known, None
        return known if known is not None else self.dump.fingerprint()

    def contents(self, fingerprint: str) -> str:
        """The whole dump for this fingerprint, kept while the database does not change."""
        if self.full is None or self.full[0] != fingerprint:
            self.full = (fingerprint, self.dump())
        return self.full[1]

    def ensure_admin(self, response) -> None:
        if (response.location or "").startswith("/login"):
            self.auth.token = None
            self.auth.login()

    def check_body(self, response, what) -> None:
        assert response.status_code < 500, (*what, response.status_code, response.get_data(as_text=True)[:300])
        marker = xss_reflected(response.get_data(as_text=True))
        assert marker is None, (*what, "reflected unescaped", marker)

    def post(self, key: tuple, overrides: dict[str, list[str]], check_all: bool = False):
        endpoint, url, form = self.posts[key]
        if endpoint in PUBLIC:
            client, real, page = self.open_page(endpoint, url)
            token = next((f.values[0] for fm in parse(page.get_data(as_text=True), real).forms
                          for n, f in fm.fields.items() if n == "csrf_token"), "")
            action = form.action.replace(url, real) if "{token}" in url else form.action
        else:
            client, token, action = self.admin, self.auth.csrf(), form.action
        values = {**sensible(form), **overrides}
        if check_all:  # every checkbox ticked: the ticket form's recurrence controls count then
            for name, f in form.fields.items():
                if f.kind == "checkbox" and name not in overrides:
                    values[name] = list(f.options)
        if "csrf_token" in form.fields and "csrf_token" not in overrides:
            values["csrf_token"] = [token]
        what = (key[0], action, {k: [v[:80] for v in vs] for k, vs in overrides.items()})
        outside = self.outside_choices(form, overrides)
        before = self.state()
        contents = self.contents(before) if outside else None
        response = client.post(action, data=form_body(form.pairs(values)), content_type=FORM_ENCODED)
        self.check_body(response, what)
        if 400 <= response.status_code < 500:
            self.known = self.dump.fingerprint()
            assert self.known == before, (*what, response.status_code, "a refused request wrote to the database")
        elif outside:
            after = self.contents(self.dump.fingerprint())
            for name, value in outside:
                assert value not in after or value in contents, (*what, f"{name} stored a value outside its choices")
        if response.status_code in (301, 302, 303) and response.location.startswith("/"):
            self.check_body(client.get(response.location), (*what, "after redirect", response.location))
        if client is self.admin:
            self.ensure_admin(response)
        return response

    @staticmethod
    def outside_choices(form: HtmlForm, overrides) -> list[tuple[str, str]]:
        """(field, value as the app would store it) for values outside a closed set of choices that
        are distinctive enough to look for in the database afterwards."""
        free = {v for name, values in overrides.items() if name not in form.fields or not form.fields[name].choice
                for v in values}  # also typed into a free-text field: storing it there is fine
        out = []
        for name, values in overrides.items():
            f = form.fields.get(name)
            if f is None or not f.choice:
                continue
            for value in values:
                if value in f.options or value in free or len(value.strip()) < 4 or value.strip().isdigit():
                    continue  # a legitimate choice, or too short to tell apart from other data
                out.append((name, value.encode("utf-8", "surrogatepass").decode("utf-8", "replace").strip()))
        return out

    def get(self, path: str, params: list[tuple[str, str]]) -> None:
        before = self.state()
        response = self.admin.get(path + "?" + urlencode(params, encoding="utf-8", errors="surrogatepass"))
        self.check_body(response, ("GET", path, [(k, v[:80]) for k, v in params]))
        self.known = self.dump.fingerprint()
        assert self.known == before, ("GET", path, [(k, v[:80]) for k, v in params], "a GET wrote to the database")
        self.ensure_admin(response)


EXPECTED_FORMS = {
    "auth.login", "account.forgot_password", "account.reset_password", "account.accept_invitation",
    "unsubscribe.unsubscribe", "tickets.new", "tickets.edit", "tickets.comment", "tickets.move", "tickets.archive",
    "tickets.bulk",
    "recurring.pause", "admin.users", "admin.edit_user", "admin.board_columns", "admin.edit_column",
    "admin.delete_column", "holidays.index", "holidays.delete", "settings.index", "outbox.test", "outbox.retry",
    "schedules.new", "schedules.edit", "schedules.one_off", "schedules.toggle", "automation.run_again",
    "backups.create", "profile.profile", "profile.save_details", "profile.change_password",
}


@pytest.fixture
def app_config(database_url):
    """A desk far from UTC, east on one database and west on the other: local times near the ends
    of the calendar then leave datetime's range when converted, as they would for a real desk."""
    return {"TIME_ZONE": "Pacific/Kiritimati" if database_url.startswith("sqlite") else "Pacific/Pago_Pago"}


@pytest.fixture
def desk(app, seeded, dump, redis):
    desk = Desk(app, seeded, dump)
    desk.discover()
    # The harvest itself: if the parser stopped finding forms, the fuzzing would test nothing.
    missing = EXPECTED_FORMS - {key[0] for key in desk.posts}
    assert not missing, missing
    assert {"q", "column", "assignee", "priority", "archived", "sort", "page"} <= desk.queries["/tickets"]
    assert "recurrence_every" in desk.queries["/tickets/recurrence-preview"]
    assert {"page", "status"} <= desk.queries["/admin/outbox"]
    assert "page" in desk.queries[f"/tickets/{seeded.template}"]  # a template's occurrences
    return desk


def test_named_hostile_values_in_every_field(desk):
    """Each named value (script, SQL, CRLF, NUL, RTL, lone surrogate, huge and negative numbers...)
    goes into every field of every form: one request per value, the fields taking them in turn."""
    named = list(SWEEP)
    for key, (_, _, form) in list(desk.posts.items()):
        fields = [name for name in form.fields if name != "csrf_token"]
        for i in range(len(named) if fields else 0):
            desk.post(key, {name: [named[(i + j) % len(named)]] for j, name in enumerate(fields)})


def attack_form(desk: Desk, key: tuple, fields: list[str]) -> None:
    @FUZZ
    @given(chosen=st.lists(st.sampled_from(fields), min_size=1, max_size=3, unique=True), data=st.data(),
           check_all=st.booleans())
    def attack(chosen, data, check_all):
        overrides = {name: data.draw(st.lists(hostile_values(), min_size=1, max_size=2), label=name)
                     for name in chosen}
        desk.post(key, overrides, check_all=check_all)

    attack()


def test_generated_hostile_values_in_some_fields(desk):
    """Hypothesis picks a few fields of each form and what goes into them; the rest stays sensible,
    so the values reach the code behind the form checks too."""
    for key, (_, _, form) in list(desk.posts.items()):
        fields = sorted(name for name in form.fields if name != "csrf_token")
        if fields:
            attack_form(desk, key, fields)


def attack_query(desk: Desk, path: str, names: list[str]) -> None:
    @FUZZ
    @given(params=st.lists(st.tuples(st.sampled_from(names), hostile_values()), min_size=1, max_size=4))
    def attack(params):
        desk.get(path, params)

    attack()


def test_query_parameters_of_every_page(desk):
    """Every page's own query parameters (its GET forms, its links, ``page``), hostile."""
    named = list(SWEEP)
    for path, names in sorted(desk.queries.items()):
        names = sorted(names)
        for i in range(len(named)):
            desk.get(path, [(name, named[(i + j) % len(named)]) for j, name in enumerate(names)])
        attack_query(desk, path, names)


FREE_TEXT = {"title", "description", "category", "body", "name"}  # prose fields; the rest have a syntax


def test_stored_hostile_values_are_escaped_everywhere(desk, seeded):
    """A script stored through the forms is shown escaped on every page afterwards, not only on the
    page the form redirects to."""
    for key in list(desk.posts):
        if key[0] in ("tickets.new", "tickets.comment", "admin.users", "admin.board_columns", "holidays.index",
                      "schedules.new"):
            form = desk.posts[key][2]
            response = desk.post(key, {name: [f"x {SCRIPT}"] for name, f in form.fields.items()
                                       if f.kind in ("text", "textarea") and name in FREE_TEXT})
            assert response.status_code == 302, key  # accepted and kept as typed: escaping is the page's job
    assert SCRIPT in desk.dump()
    for endpoint, url in desk.pages:
        _, real, response = desk.open_page(endpoint, url)
        desk.check_body(response, ("GET", real))
