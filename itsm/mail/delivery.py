"""The outbox's delivery rules, as an MTA has them: which failures are worth trying again, and when.

Pure functions (no Flask, no database), so that the schedule and the classification are tested on
their own. ``itsm.mail.sending`` applies them to the rows.
"""

from __future__ import annotations

import smtplib
from collections.abc import Sequence
from datetime import datetime, timedelta


class Undeliverable(Exception):  # noqa: N818 -- what the outbox calls a permanent refusal
    """The server refused this message for good (a 5xx for its recipient, sender or content): no retry
    will deliver it. Deliberately not an SMTPException or OSError, so the send job does not retry it."""


def retry_delay(deferrals: int, delays: Sequence[int]) -> int:
    """Seconds until the next try of a message deferred ``deferrals`` times before (0 for its first
    deferral): the n-th of ``delays`` (MAIL_RETRY_DELAYS), the last one repeating."""
    return delays[min(max(deferrals, 0), len(delays) - 1)]


def next_attempt(now: datetime, deadline: datetime, deferrals: int, delays: Sequence[int]) -> datetime | None:
    """When to try a transiently failed message again: after its retry delay, but never later than its
    deadline (so a last try happens then); None once the deadline has passed (the message has failed)."""
    if now >= deadline:
        return None
    return min(now + timedelta(seconds=retry_delay(deferrals, delays)), deadline)


def describe_delays(delays: Sequence[int]) -> str:
    """The retry schedule in words: ``(60, 300, 3600)`` is "1 min, 5 min, 60 min, then every 60 min"."""
    def words(seconds: int) -> str:
        return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"
    steps = [words(d) for d in delays]
    return ", ".join(steps) + f", then every {steps[-1]}" if len(steps) > 1 else f"every {steps[0]}"


def is_permanent(error: BaseException) -> bool:
    """Whether the server refused this message itself with a 5xx reply: every recipient refused (5xx), the
    sender refused, or the content (DATA) refused. Connection trouble, timeouts, a server that hung up and
    4xx replies are transient; so are 5xx replies that are about the server or our settings rather than
    the message (a refused login, HELO), which a fixed setting lets through without a retry click."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        return bool(codes) and all(_permanent_code(code) for code in codes)
    if isinstance(error, smtplib.SMTPSenderRefused | smtplib.SMTPDataError):
        return _permanent_code(error.smtp_code)
    return False


def _permanent_code(code) -> bool:
    try:
        return 500 <= int(code) <= 599
    except (TypeError, ValueError):
        return False
