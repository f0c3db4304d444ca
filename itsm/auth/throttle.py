"""Failed-login counters in Redis, per email address and per client address.

After ``LOGIN_MAX_FAILURES`` wrong passwords for one email address, or ``IP_FACTOR`` times
as many from one client address, within ``LOGIN_LOCKOUT_MINUTES``, /login refuses further
attempts (even a right password) until the window ends. Each counter is a Redis key that
expires with its window (created with the first failure; later failures do not extend it).
Unknown addresses are counted exactly like known ones, so the lockout says nothing about
which accounts exist. A successful login clears its email address's counter; the client
address counter only runs out, so one valid account cannot hide a password spray.

Redis being down must not lock the desk: the login then goes ahead without counting, with a
warning in the log (once per request: later steps of the same login do not wait for Redis again).
"""

from __future__ import annotations

import hashlib
import logging
import math

from flask import current_app, g, request
from redis.exceptions import RedisError

from itsm.extensions import redis_client, redis_shown
from itsm.users.service import email_key

log = logging.getLogger(__name__)

IP_FACTOR = 4  # one client address may fail this many times as often as one email address
PREFIX = "itsm:login-failures"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def namespace() -> str:
    """The key prefix of this desk: desks (and test runs) sharing one Redis keep apart counters."""
    return f"{PREFIX}:{_digest(current_app.config['SQLALCHEMY_DATABASE_URI'])[:12]}"


def client_address() -> str:
    """The peer address: the proxied client's with PROXY_HOPS set (ProxyFix), else the connecting one."""
    return request.remote_addr or "unknown"


def _keys(email: str, address: str) -> tuple[str, str]:
    ns = namespace()
    return f"{ns}:email:{_digest(email_key(email))}", f"{ns}:ip:{_digest(address)}"


def limits() -> tuple[int, int]:
    per_email = max(1, int(current_app.config["LOGIN_MAX_FAILURES"]))
    return per_email, per_email * IP_FACTOR


def window_seconds() -> int:
    return max(1, int(current_app.config["LOGIN_LOCKOUT_MINUTES"] * 60))


def _down() -> bool:
    """Redis already failed during this request: do not wait for it (a connect timeout) again."""
    return g.get("login_throttle_down", False)


def _warn(action: str, err: RedisError) -> None:
    g.login_throttle_down = True
    log.warning("Login rate limit %s skipped: Redis at %s is unreachable (%s: %s)", action,
                redis_shown(), err.__class__.__name__, err)


def retry_after(email: str, address: str) -> int | None:
    """Seconds until this email address and client may try again; None while they may try now."""
    if _down():
        return None
    email_key, ip_key = _keys(email, address)
    per_email, per_ip = limits()
    client = redis_client()
    try:
        email_count, ip_count = (int(v or 0) for v in client.mget(email_key, ip_key))
        locked = [key for key, count, limit in ((email_key, email_count, per_email), (ip_key, ip_count, per_ip))
                  if count >= limit]
        if not locked:
            return None
        ttls = [client.ttl(key) for key in locked]
    except RedisError as err:
        _warn("check", err)
        return None
    # -1 (no expiry) or -2 (expired meanwhile) should not happen; assume a whole window then.
    return max(ttl if ttl > 0 else window_seconds() for ttl in ttls)


def record_failure(email: str, address: str) -> None:
    """Count one wrong password (or unknown address) against both counters."""
    if _down():
        return
    ttl = window_seconds()
    pipe = redis_client().pipeline(transaction=True)
    for key in _keys(email, address):
        pipe.set(key, 0, ex=ttl, nx=True)  # a new window starts with the first failure
        pipe.incr(key)  # INCR keeps the key's expiry
    try:
        pipe.execute()
    except RedisError as err:
        _warn("count", err)


def clear(email: str) -> None:
    """A successful login: this email address starts from zero again."""
    if _down():
        return
    email_key, _ = _keys(email, "")
    try:
        redis_client().delete(email_key)
    except RedisError as err:
        _warn("reset", err)


def message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return (f"Too many failed login attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}, "
            "or use \u201cForgot your password?\u201d below.")
