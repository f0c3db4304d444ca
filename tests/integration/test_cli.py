"""Flask CLI: users create-admin, demo seed."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func

from itsm.board.models import BoardColumn
from itsm.extensions import db
from itsm.tickets.models import Ticket
from tests import factories


def test_create_admin_with_password(app, runner):
    result = runner.invoke(args=["users", "create-admin", "--email", "Boss@Example.com", "--password",
                                 "a-long-password"])
    assert result.exit_code == 0, result.output
    assert "Created admin boss@example.com" in result.output
    with app.app_context():
        boss = factories.user("boss@example.com")
        assert boss.is_admin and boss.check_password("a-long-password")


def test_create_admin_prompts_for_password(app, runner):
    result = runner.invoke(args=["users", "create-admin", "--email", "ops@example.com"],
                           input="a-long-password\na-long-password\n")
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert factories.user("ops@example.com").check_password("a-long-password")


def test_create_admin_refuses_bad_input(app, runner):
    for args, message in (
        (["--email", "not-an-email", "--password", "a-long-password"], "Invalid email address"),
        (["--email", "admin@example.com", "--password", "a-long-password"], "already exists"),
        (["--email", "x@example.com", "--password", "short"], "at least 10 characters"),
    ):
        result = runner.invoke(args=["users", "create-admin", *args])
        assert result.exit_code != 0
        assert message in result.output
        assert "Traceback" not in result.output
    with app.app_context():
        assert factories.user("x@example.com") is None


def test_demo_seed_is_idempotent(app, runner):
    first = runner.invoke(args=["demo", "seed"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(args=["demo", "seed"])
    assert second.exit_code == 0 and "already present" in second.output
    with app.app_context():
        assert db.session.scalar(db.select(func.count(BoardColumn.id))) == 4  # the board existed already
        assert db.session.scalar(db.select(func.count(Ticket.id)).where(Ticket.is_recurring.is_(False))) == 6
        template = db.session.scalar(db.select(Ticket).where(Ticket.is_recurring.is_(True)))
        local = template.recurrence.next_occurrence.astimezone(ZoneInfo(app.config["TIME_ZONE"]))
        assert (local.weekday(), local.hour, local.minute) == (0, 9, 0)  # the weekly patch check: Monday 09:00
        assert factories.user("admin@example.com") is not None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("args", "expected"), [
    (["bogus"], "Error: No such command 'bogus'. (see 'python -m flask --help')"),
    (["user", "--x", "1"], "Error: No such command 'user'. Did you mean 'users'? (see 'python -m flask --help')"),
    (["users", "bogus"], "Error: No such command 'bogus'. (see 'python -m flask users --help')"),
])
def test_a_name_that_is_no_command_is_one_line(procs, args, expected):
    """Flask's own top-level group answers unknown names through the app's commands: one line too."""
    result = procs.run(*args)
    assert result.returncode == 2 and not result.stdout
    assert result.stderr.strip().splitlines() == [expected]
