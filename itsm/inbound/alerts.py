"""Admins hear of a mailbox that keeps failing: once per episode, as with late schedules."""

from __future__ import annotations

from itsm.inbound.models import Mailbox
from itsm.mail.outbox import queue_email
from itsm.users.service import admins_wanting


def mailbox_failing(mailbox: Mailbox) -> None:
    """Written in the caller's transaction (it also marks the episode as told)."""
    for admin in admins_wanting("notify_system_failures"):
        queue_email("mailbox_failing", admin.email, f"[itsm] Mailbox {mailbox.name} cannot be fetched",
                    "mailbox_failing", mailbox=mailbox, failures=mailbox.failures_in_row, error=mailbox.last_error)
