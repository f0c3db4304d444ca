"""``flask demo seed``: columns, users and tickets to explore the desk (idempotent)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import click
from flask import current_app

from itsm.board.models import BoardColumn, ordered_columns
from itsm.board.service import create_column
from itsm.cliparams import Group
from itsm.extensions import db
from itsm.recurring import service as recurring
from itsm.recurring.series import Recurrence
from itsm.tickets import service as tickets
from itsm.tickets.models import Ticket
from itsm.users.service import create_user, find_by_email

demo_cli = Group("demo", help="Demo data.")

DEMO_ADMIN = ("admin@example.com", "demo-admin-pass", "Ada Admin")
DEMO_AGENT = ("agent@example.com", "demo-agent-pass", "Alan Agent")
COLUMNS = (("New", False), ("In progress", False), ("Waiting", False), ("Done", True))
TICKETS = (
    ("Laptop will not boot after update", "Screen stays black after the BIOS logo.", 4, "Hardware", "New"),
    ("VPN drops every 10 minutes", "Happens on the office Wi-Fi only.", 3, "Network", "In progress"),
    ("New starter: accounts for J. Smith", "Email, VPN and ticketing access from Monday.", 2, "Access", "New"),
    ("Printer on floor 2 jams", "Tray 3 jams on every duplex job.", 1, "Hardware", "Waiting"),
    ("Renew TLS certificate for intranet", "Expires at the end of the month.", 3, "Infrastructure", "Done"),
    ("Shared mailbox for the finance team", "", 2, "Access", "In progress"),
)


def _seed_recurring(admin, agent) -> None:
    """The product's example: the patch check every Monday at 09:00 local time."""
    zone = ZoneInfo(current_app.config["TIME_ZONE"])
    today = datetime.now(zone).date()
    monday = today + timedelta(days=(7 - today.weekday()) % 7 or 7)
    start = datetime.combine(monday, time(9, 0), tzinfo=zone)
    ticket = tickets.create_ticket(actor=admin, column=None, title="Weekly patch check ({week})",
                                   description="Review the patch report and schedule reboots.", priority=3,
                                   category="Patching", assignee_id=agent.id)
    recurring.make_template(ticket, admin, Recurrence.build(
        start, recurrence_interval="weekly", recurrence_weekdays="0", recurrence_time_zone=zone.key))


@demo_cli.command("seed")
def seed() -> None:
    """Create demo columns, an admin, an agent and a few tickets (only what is missing)."""
    created = []
    if not ordered_columns():
        for name, done in COLUMNS:
            create_column(name, done)
        created.append("columns")
    users = {}
    for email, password, name in (DEMO_ADMIN, DEMO_AGENT):
        user = find_by_email(email)
        if user is None:
            role = "admin" if email == DEMO_ADMIN[0] else "agent"
            user = create_user(email=email, password=password, role=role, name=name)
            created.append(email)
        users[email] = user
    if db.session.scalar(db.select(Ticket.id).limit(1)) is None:
        by_name = {c.name: c for c in db.session.scalars(db.select(BoardColumn))}
        fallback = ordered_columns()[0]
        for i, (title, description, priority, category, column) in enumerate(TICKETS):
            tickets.create_ticket(
                actor=users[DEMO_ADMIN[0]], column=by_name.get(column, fallback), title=title,
                description=description, priority=priority, category=category,
                assignee_id=users[DEMO_AGENT[0]].id if i % 2 else None,
                requester_email=f"user{i + 1}@example.com",
            )
        created.append(f"{len(TICKETS)} tickets")
    if db.session.scalar(db.select(Ticket.id).where(Ticket.is_recurring.is_(True)).limit(1)) is None:
        _seed_recurring(users[DEMO_ADMIN[0]], users[DEMO_AGENT[0]])
        created.append("a weekly recurring ticket")
    db.session.commit()
    click.echo("Demo data: created " + ", ".join(created) + "." if created else "Demo data: already present.")
