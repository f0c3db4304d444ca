"""Settings, read from the environment in one place (see CONTRACT's table)."""

from __future__ import annotations

import os
import re
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from redis.connection import parse_url

from itsm.zones import is_known_zone

ENVIRONMENTS = ("development", "production", "testing")
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
# BACKUP_COPY_COMMAND's placeholders, each replaced inside the word it stands in: the backup file's absolute
# path, its file name, and its manifest's absolute path.
COPY_PLACEHOLDERS = ("{path}", "{name}", "{manifest}")
# A ``{word}``, but not one inside doubled braces (``{{...}}``, some tools' own pattern syntax).
COPY_PLACEHOLDER = re.compile(r"(?<!\{)\{[a-z_]+\}(?!\})")
COPY_TIMEOUT_MAX = 6 * 3600  # the copy jobs' time limits are sized for it


class ConfigError(SystemExit):
    """A setting is missing or wrong; exits with a one-line reason, no traceback."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"itsm: configuration error: {reason}")


def normalize_database_url(url: str) -> str:
    """Accept Heroku-style ``postgres://`` and plain ``postgresql://`` URLs; use psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _int(env: dict, name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None


def _seconds_list(env: dict, name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """A comma-separated list of whole seconds, each from 1 second to 7 days."""
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        values = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise ConfigError(f"{name} must be whole seconds separated by commas, got {raw!r}") from None
    if not all(1 <= v <= 7 * 86400 for v in values):
        raise ConfigError(f"{name} must list delays from 1 second to 7 days, got {raw!r}")
    return values


def split_copy_command(raw: str) -> list[str]:
    """BACKUP_COPY_COMMAND as the argument list it is run with (shell-like quoting, never through a shell);
    ValueError with the reason when it cannot be used."""
    try:
        argv = shlex.split(raw)
    except ValueError as err:
        raise ValueError(f"cannot be split into words ({err}): check its quotes") from None
    if not argv:
        raise ValueError("is empty")
    unknown = sorted({m for word in argv for m in COPY_PLACEHOLDER.findall(word)} - set(COPY_PLACEHOLDERS))
    if unknown:
        raise ValueError(f"has the unknown placeholder {unknown[0]} (known: {', '.join(COPY_PLACEHOLDERS)})")
    if COPY_PLACEHOLDER.search(argv[0]):
        raise ValueError(f"must start with the program to run, not {argv[0]!r}")
    return argv


def _copy_command(env: dict) -> str | None:
    raw = (env.get("BACKUP_COPY_COMMAND") or "").strip()
    if not raw:
        return None
    try:
        split_copy_command(raw)
    except ValueError as err:
        raise ConfigError(f"BACKUP_COPY_COMMAND {err}") from None
    return raw
PLAIN_REDIS_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
SENTINEL_URL_FORM = "redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db]"


@dataclass(frozen=True)
class RedisTarget:
    """Where every Redis client of the app connects: one node (a plain URL), or whichever node the
    Redis Sentinels name as the master of ``service`` now."""

    url: str | None = None  # a plain URL, as given
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    db: int = 0
    password: str | None = None  # the data nodes' (a plain URL's own password wins)
    sentinel_password: str | None = None  # the Sentinels' own, when they require one

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)

    def sentinel_list(self) -> str:
        return ",".join(host_port(host, port) for host, port in self.sentinels)

    def display(self) -> str:
        """For messages and pages: the URL without its password."""
        if not self.is_sentinel:
            return without_password(self.url or "")
        return f"{SENTINEL_SCHEME}://{self.sentinel_list()}/{self.service}/{self.db}"

    def dashboard_settings(self) -> dict:
        """rq-dashboard's connection settings: its redis_sentinel_url reads the same URL grammar, but takes a
        password in it undecoded, so the password goes apart (decoded)."""
        if not self.is_sentinel:
            return {"RQ_DASHBOARD_REDIS_URL": self.url, "RQ_DASHBOARD_REDIS_PASSWORD": self.password,
                    "RQ_DASHBOARD_REDIS_SENTINEL_PASSWORD": self.sentinel_password}
        return {"RQ_DASHBOARD_REDIS_URL": self.display(), "RQ_DASHBOARD_REDIS_PASSWORD": self.password,
                "RQ_DASHBOARD_REDIS_SENTINEL_PASSWORD": self.sentinel_password}


def without_password(url: str) -> str:
    """A URL as it may be shown: no user or password."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _sentinel_hosts(name: str, raw: str) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` (port 26379 when left out)."""
    hosts = []
    for part in raw.split(","):
        part = part.strip()
        if "[" in part or part.count(":") > 1:
            # rq-dashboard (redis_sentinel_url) cannot read them: /admin/rq would fail where the rest works.
            raise ConfigError(f"{name}: IPv6 addresses of Sentinels are not supported; use a host name, got {raw!r}")
        host, _, port_text = part.partition(":")
        port_text = port_text or str(DEFAULT_SENTINEL_PORT)
        if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(f"{name} must list Sentinels as host:port separated by commas, got {raw!r}")
        hosts.append((host, int(port_text)))
    return tuple(hosts)


def _sentinel_db(name: str, raw: str) -> int:
    if not raw.isdigit():
        raise ConfigError(f"{name}: the Redis database must be a whole number from 0, got {raw!r}")
    return int(raw)


def parse_sentinel_url(url: str, password: str | None = None, sentinel_password: str | None = None) -> RedisTarget:
    """``redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db]``, rq-dashboard's grammar
    (redis_sentinel_url) without its query options; raises ConfigError saying what is wrong."""
    shown = without_password(url)
    rest = url[len(SENTINEL_SCHEME) + 3:]
    netloc, _, path = rest.partition("/")
    if "?" in path or "#" in path or "?" in netloc:
        raise ConfigError(f"REDIS_URL: a {SENTINEL_SCHEME} URL takes no query options ({SENTINEL_URL_FORM}), "
                          f"got {shown!r}")
    auth, at, hostspec = netloc.rpartition("@")
    if at:
        user, colon, secret = auth.partition(":")
        if user or not colon:
            raise ConfigError(f"REDIS_URL: a {SENTINEL_SCHEME} URL takes a password only, as :password@ "
                              f"({SENTINEL_URL_FORM})")
        password = unquote(secret) or password
    if not hostspec:
        raise ConfigError(f"REDIS_URL: a {SENTINEL_SCHEME} URL must list its Sentinels ({SENTINEL_URL_FORM}), "
                          f"got {shown!r}")
    sentinels = _sentinel_hosts("REDIS_URL", hostspec)
    segments = path.split("/") if path else []
    if not segments or not segments[0] or len(segments) > 2:
        raise ConfigError(f"REDIS_URL: a {SENTINEL_SCHEME} URL must name the service the Sentinels monitor, "
                          f"and optionally the database ({SENTINEL_URL_FORM}), got {shown!r}")
    db = _sentinel_db("REDIS_URL", segments[1]) if len(segments) == 2 and segments[1] else 0
    return RedisTarget(sentinels=sentinels, service=unquote(segments[0]), db=db, password=password,
                       sentinel_password=sentinel_password)


def redis_target(config: Mapping) -> RedisTarget:
    """The app's Redis from its settings (``REDIS_URL``, ``REDIS_PASSWORD``, ``REDIS_SENTINEL_PASSWORD``)."""
    url = config.get("REDIS_URL") or ""
    password = config.get("REDIS_PASSWORD") or None
    sentinel_password = config.get("REDIS_SENTINEL_PASSWORD") or None
    scheme, sep, _ = url.partition("://")
    if sep and scheme == SENTINEL_SCHEME:
        return parse_sentinel_url(url, password, sentinel_password)
    if not sep or scheme not in PLAIN_REDIS_SCHEMES:
        raise ConfigError(f"REDIS_URL must start with redis://, rediss://, unix:// or {SENTINEL_SCHEME}://, "
                          f"got {without_password(url)!r}")
    try:
        parse_url(url)
    except ValueError as err:
        raise ConfigError(f"REDIS_URL is not a Redis URL ({err})") from None
    parts = urlsplit(url)
    if scheme != "unix" and parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise ConfigError(f"REDIS_URL: the database (the path) must be a whole number, got {without_password(url)!r}")
    return RedisTarget(url=url, password=password, sentinel_password=sentinel_password)


def _redis_settings(env: dict) -> dict:
    """REDIS_URL (plain or redis+sentinel), or REDIS_SENTINELS with REDIS_SENTINEL_SERVICE and
    REDIS_SENTINEL_DB, which become the equivalent redis+sentinel REDIS_URL; checked here, at startup."""
    settings = {"REDIS_URL": env.get("REDIS_URL") or DEFAULT_REDIS_URL,
                "REDIS_PASSWORD": env.get("REDIS_PASSWORD") or None,
                "REDIS_SENTINEL_PASSWORD": env.get("REDIS_SENTINEL_PASSWORD") or None}
    sentinels = (env.get("REDIS_SENTINELS") or "").strip()
    service = (env.get("REDIS_SENTINEL_SERVICE") or "").strip()
    db = (env.get("REDIS_SENTINEL_DB") or "").strip()
    if sentinels:
        if env.get("REDIS_URL"):
            raise ConfigError("REDIS_URL and REDIS_SENTINELS are both set: use one (REDIS_URL="
                              f"{SENTINEL_SCHEME}://... or REDIS_SENTINELS with REDIS_SENTINEL_SERVICE)")
        if not service:
            raise ConfigError("REDIS_SENTINELS needs REDIS_SENTINEL_SERVICE, the name of the master the "
                              "Sentinels monitor")
        hosts = _sentinel_hosts("REDIS_SENTINELS", sentinels)
        target = RedisTarget(sentinels=hosts, service=service, db=_sentinel_db("REDIS_SENTINEL_DB", db or "0"))
        settings["REDIS_URL"] = target.display()
    elif service or db:
        raise ConfigError(f"{'REDIS_SENTINEL_SERVICE' if service else 'REDIS_SENTINEL_DB'} is set without "
                          "REDIS_SENTINELS (the Sentinels' host:port list)")
    redis_target(settings)
    return settings


def ensure_secret_key(config: dict, instance_path: str) -> None:
    """Require SECRET_KEY in production; elsewhere generate one once and keep it."""
    if config.get("SECRET_KEY"):
        return
    if config["ITSM_ENV"] == "production":
        raise ConfigError("SECRET_KEY must be set when ITSM_ENV=production")
    # Development and tests: generate once and keep it so sessions survive restarts.
    path = Path(instance_path) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race; use its key
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
    config["SECRET_KEY"] = path.read_text().strip()


def load_config(instance_path: str, env: dict | None = None) -> dict:
    """Build the Flask config mapping from environment variables."""
    env = dict(os.environ if env is None else env)
    instance = Path(instance_path)
    itsm_env = env.get("ITSM_ENV", "development") or "development"
    if itsm_env not in ENVIRONMENTS:
        raise ConfigError(f"ITSM_ENV must be one of {', '.join(ENVIRONMENTS)}, got {itsm_env!r}")

    time_zone = env.get("TIME_ZONE", "UTC") or "UTC"
    if not is_known_zone(time_zone):  # the default zone of every schedule: the rule schedules follow
        raise ConfigError(f"TIME_ZONE {time_zone!r} is not a known IANA time zone")

    database_url = env.get("DATABASE_URL") or f"sqlite:///{instance / 'itsm.db'}"
    production = itsm_env == "production"
    copy_timeout = _int(env, "BACKUP_COPY_TIMEOUT_SECONDS", 3600)
    if not 1 <= copy_timeout <= COPY_TIMEOUT_MAX:
        raise ConfigError(f"BACKUP_COPY_TIMEOUT_SECONDS must be from 1 to {COPY_TIMEOUT_MAX} (6 hours), "
                          f"got {copy_timeout}")
    deadline_hours = _int(env, "MAIL_DELIVERY_DEADLINE_HOURS", 24)
    if not 0 <= deadline_hours <= 720:
        raise ConfigError(f"MAIL_DELIVERY_DEADLINE_HOURS must be from 0 to 720 (30 days), got {deadline_hours}")
    attachment_mb = _int(env, "ATTACHMENT_MAX_MB", 25)
    if not 1 <= attachment_mb <= 2048:
        raise ConfigError(f"ATTACHMENT_MAX_MB must be from 1 to 2048, got {attachment_mb}")
    # A whole request: room for a few files at the limit and the form around them.
    request_bytes = _int(env, "MAX_CONTENT_LENGTH", max(4 * attachment_mb, attachment_mb + 16) * 1048576)
    if request_bytes < attachment_mb * 1048576 + 65536:
        raise ConfigError(f"MAX_CONTENT_LENGTH ({request_bytes} bytes) must leave room for one file of "
                          f"ATTACHMENT_MAX_MB ({attachment_mb} MB) and its form")
    return {
        "ITSM_ENV": itsm_env,
        "ATTACHMENT_MAX_MB": attachment_mb,
        # Each web host's copies of downloaded files, sent with sendfile (itsm.attachments.cache); 0: none.
        "ATTACHMENT_CACHE_DIR": env.get("ATTACHMENT_CACHE_DIR") or str(instance / "attachment-cache"),
        "ATTACHMENT_CACHE_MB": _int(env, "ATTACHMENT_CACHE_MB", 1024),
        "MAIL_TICKET_PREFIX": env.get("MAIL_TICKET_PREFIX") or "#",  # subjects carry [#123]
        "MAIL_MESSAGE_ID_DOMAIN": env.get("MAIL_MESSAGE_ID_DOMAIN") or None,  # default: BASE_URL's host
        "MAIL_INBOUND_KEY": env.get("MAIL_INBOUND_KEY") or None,
        "MAIL_INBOUND_ALLOW_PLAIN": _bool(env.get("MAIL_INBOUND_ALLOW_PLAIN")),
        "MAIL_INBOUND_MAX_PER_SENDER_HOUR": _int(env, "MAIL_INBOUND_MAX_PER_SENDER_HOUR", 20),
        "MAX_CONTENT_LENGTH": request_bytes,
        "TESTING": itsm_env == "testing",
        "SECRET_KEY": env.get("SECRET_KEY") or None,
        "SQLALCHEMY_DATABASE_URI": normalize_database_url(database_url),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "REDIS_URL": env.get("REDIS_URL") or DEFAULT_REDIS_URL,
        **_redis_settings(env),
        "TIME_ZONE": time_zone,
        "TICKET_ARCHIVE_AFTER_HOURS": _int(env, "TICKET_ARCHIVE_AFTER_HOURS", 24),
        "BACKUP_DIR": env.get("BACKUP_DIR") or str(instance / "backups"),
        "BACKUP_KEEP_DAILY": _int(env, "BACKUP_KEEP_DAILY", 30),  # days of daily backups kept
        "BACKUP_KEEP_WEEKLY": _int(env, "BACKUP_KEEP_WEEKLY", 12),  # weeks of weekly backups
        "BACKUP_KEEP_MONTHLY": _int(env, "BACKUP_KEEP_MONTHLY", 12),  # months of monthly backups
        # Run after each verified backup to copy it off this machine (itsm/backups/copying.py).
        "BACKUP_COPY_COMMAND": _copy_command(env),
        "BACKUP_COPY_TIMEOUT_SECONDS": copy_timeout,
        "BASE_URL": (env.get("BASE_URL") or "http://127.0.0.1:5000").rstrip("/"),  # links in emails
        "INVITE_MAX_AGE_HOURS": _int(env, "INVITE_MAX_AGE_HOURS", 72),  # invitation links expire after this
        "PASSWORD_RESET_MAX_AGE_MINUTES": _int(env, "PASSWORD_RESET_MAX_AGE_MINUTES", 60),
        # Failed logins per email address (four times as many per client address) before /login
        # refuses further attempts for LOGIN_LOCKOUT_MINUTES; counted in Redis (itsm/auth/throttle.py).
        "LOGIN_MAX_FAILURES": _int(env, "LOGIN_MAX_FAILURES", 5),
        "LOGIN_LOCKOUT_MINUTES": _int(env, "LOGIN_LOCKOUT_MINUTES", 15),
        # A login session (remember-me included) not used for this many days ends (itsm/auth/sessions.py).
        "SESSION_IDLE_DAYS": _int(env, "SESSION_IDLE_DAYS", 30),
        # Reverse proxies in front of the web process (each appends to X-Forwarded-For): with 1 or more
        # the client address, scheme and host come from those headers (the per-address login limit, links).
        "PROXY_HOPS": _int(env, "PROXY_HOPS", 0),
        # A folder the development mail sink writes to; the outbox page then shows what arrived.
        "MAIL_SINK_DIR": env.get("MAIL_SINK_DIR") or None,
        "READYZ_TOKEN": env.get("READYZ_TOKEN") or None,  # when set, /readyz shows its checks only to holders
        "MAIL_SERVER": env.get("MAIL_SERVER", "localhost"),
        "MAIL_PORT": _int(env, "MAIL_PORT", 25),
        "MAIL_USE_TLS": _bool(env.get("MAIL_USE_TLS")),
        "MAIL_USE_SSL": _bool(env.get("MAIL_USE_SSL")),
        "MAIL_USERNAME": env.get("MAIL_USERNAME"),
        "MAIL_PASSWORD": env.get("MAIL_PASSWORD"),
        "MAIL_DEFAULT_SENDER": env.get("MAIL_DEFAULT_SENDER", "itsm@localhost"),
        # The outbox keeps trying a message that failed for a transient reason (connection, timeout, 4xx)
        # after these delays in seconds (the last repeating), until this many hours after it was written.
        "MAIL_RETRY_DELAYS": _seconds_list(env, "MAIL_RETRY_DELAYS", (60, 300, 900, 3600)),
        "MAIL_DELIVERY_DEADLINE_HOURS": deadline_hours,
        # Flask-Mail drops every message when TESTING is on; the outbox must never lose mail silently.
        "MAIL_SUPPRESS_SEND": _bool(env.get("MAIL_SUPPRESS_SEND")),
        "JOBS_EAGER": _bool(env.get("JOBS_EAGER")),
        "LOG_LEVEL": (env.get("LOG_LEVEL") or "INFO").upper(),
        # Job loggers (workers, scheduler): LOG_LEVEL when set, else WARNING in production (a line per job
        # and per tick is noise there), INFO elsewhere.
        "JOBS_LOG_LEVEL": (env.get("LOG_LEVEL") or ("WARNING" if production else "INFO")).upper(),
        "JOBS_QUEUES": ("high", "default", "low"),
        "JOBS_IMPORTS": tuple(m.strip() for m in env.get("JOBS_IMPORTS", "").split(",") if m.strip()),
        "JOBS_HEARTBEAT_SECONDS": _int(env, "JOBS_HEARTBEAT_SECONDS", 5),
        "JOBS_MAINTENANCE_SECONDS": _int(env, "JOBS_MAINTENANCE_SECONDS", 15),
        # A queued job Redis no longer has, queued longer ago than this, was lost with Redis (jobs.recovery).
        "JOBS_LOST_GRACE_SECONDS": _int(env, "JOBS_LOST_GRACE_SECONDS", 30),
        "JOBS_AUDIT_ASYNC_COMMIT": _bool(env.get("JOBS_AUDIT_ASYNC_COMMIT"), default=True),
        "JOB_RUN_RETENTION_DAYS": _int(env, "JOB_RUN_RETENTION_DAYS", 90),
        "TICKETS_PER_PAGE": 50,
        "TICKETS_EXPORT_BATCH": 1000,  # rows per read of a CSV export
        "BOARD_CARDS_PER_COLUMN": 25,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": production,
        "WTF_CSRF_TIME_LIMIT": None,  # tied to the session instead of a clock
    }


