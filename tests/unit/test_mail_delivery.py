"""The outbox's delivery rules: the retry schedule, its deadline, and which SMTP failures are permanent."""

from __future__ import annotations

import smtplib
from datetime import UTC, datetime, timedelta

import pytest

from itsm.config import ConfigError, load_config
from itsm.mail.delivery import describe_delays, is_permanent, next_attempt, retry_delay

DEFAULT = (60, 300, 900, 3600)
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def test_the_delays_grow_then_repeat_the_last():
    assert [retry_delay(n, DEFAULT) for n in range(7)] == [60, 300, 900, 3600, 3600, 3600, 3600]
    assert retry_delay(10_000, DEFAULT) == 3600
    assert [retry_delay(n, (5,)) for n in range(3)] == [5, 5, 5]


def test_a_day_of_retries_follows_the_schedule_and_ends_at_the_deadline():
    """Fail at every try: 1, 5, 15, 60 minutes, then hourly; the last try is at the deadline itself."""
    started = NOW
    deadline = started + timedelta(hours=24)
    tries, now, deferrals = [], started, 0
    while (when := next_attempt(now, deadline, deferrals, DEFAULT)) is not None:
        tries.append(when)
        now, deferrals = when, deferrals + 1
    gaps = [(b - a).total_seconds() / 60 for a, b in zip([started, *tries], tries, strict=False)]
    assert gaps[:5] == [1, 5, 15, 60, 60]
    assert set(gaps[4:-1]) == {60} and 0 < gaps[-1] <= 60
    assert tries[-1] == deadline and len(tries) == 4 + 23  # 81 minutes, then hourly to the 24th hour
    assert all(b > a for a, b in zip(tries, tries[1:], strict=False))


def test_the_deadline_caps_the_next_try_and_then_fails_the_message():
    deadline = NOW + timedelta(minutes=10)
    assert next_attempt(NOW, deadline, 3, DEFAULT) == deadline  # an hour's delay would pass it
    assert next_attempt(NOW, deadline, 0, DEFAULT) == NOW + timedelta(minutes=1)
    assert next_attempt(deadline, deadline, 0, DEFAULT) is None
    assert next_attempt(deadline + timedelta(seconds=1), deadline, 0, DEFAULT) is None


def test_the_schedule_in_words():
    assert describe_delays(DEFAULT) == "1 min, 5 min, 15 min, 60 min, then every 60 min"
    assert describe_delays((5, 90)) == "5 s, 90 s, then every 90 s"
    assert describe_delays((120,)) == "every 2 min"


@pytest.mark.parametrize(("error", "permanent"), [
    (smtplib.SMTPRecipientsRefused({"pat@example.com": (550, b"5.1.1 no such user")}), True),
    (smtplib.SMTPRecipientsRefused({"pat@example.com": (450, b"4.2.1 mailbox busy")}), False),
    (smtplib.SMTPRecipientsRefused({"pat@example.com": (421, b"closing")}), False),
    (smtplib.SMTPRecipientsRefused({}), False),
    (smtplib.SMTPSenderRefused(553, b"5.7.1 sender not allowed", "desk@example.com"), True),
    (smtplib.SMTPSenderRefused(451, b"4.3.0 try later", "desk@example.com"), False),
    (smtplib.SMTPDataError(554, b"5.6.0 message rejected"), True),
    (smtplib.SMTPDataError(421, b"4.3.2 service not available"), False),
    (smtplib.SMTPAuthenticationError(535, b"bad credentials"), False),  # our setting, not this message
    (smtplib.SMTPConnectError(421, b"too busy"), False),
    (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), False),
    (ConnectionRefusedError(111, "Connection refused"), False),
    (ConnectionResetError(104, "Connection reset by peer"), False),
    (TimeoutError("timed out"), False),
])
def test_only_a_5xx_for_the_message_is_permanent(error, permanent):
    assert is_permanent(error) is permanent


def test_the_settings_and_their_bounds(tmp_path):
    config = load_config(str(tmp_path), env={})
    assert config["MAIL_RETRY_DELAYS"] == DEFAULT and config["MAIL_DELIVERY_DEADLINE_HOURS"] == 24
    config = load_config(str(tmp_path), env={"MAIL_RETRY_DELAYS": "5, 10,20", "MAIL_DELIVERY_DEADLINE_HOURS": "72"})
    assert config["MAIL_RETRY_DELAYS"] == (5, 10, 20) and config["MAIL_DELIVERY_DEADLINE_HOURS"] == 72
    for env in ({"MAIL_RETRY_DELAYS": "1,x"}, {"MAIL_RETRY_DELAYS": "0"}, {"MAIL_RETRY_DELAYS": "60,"},
                {"MAIL_RETRY_DELAYS": "999999999"}, {"MAIL_DELIVERY_DEADLINE_HOURS": "-1"},
                {"MAIL_DELIVERY_DEADLINE_HOURS": "100000"}):
        with pytest.raises(ConfigError, match=next(iter(env))):
            load_config(str(tmp_path), env=env)
