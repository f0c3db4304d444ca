import os
import subprocess
import sys
from pathlib import Path

import pytest

from itsm.config import ConfigError, ensure_secret_key, load_config, normalize_database_url
from itsm.dbtypes import UTCDateTime

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgresql://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_urls_are_normalized(url, expected):
    assert normalize_database_url(url) == expected


def test_defaults_follow_the_contract(tmp_path):
    config = load_config(str(tmp_path), env={})
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'itsm.db'}"
    assert config["REDIS_URL"] == "redis://localhost:6379/0"
    assert config["TIME_ZONE"] == "UTC"
    assert config["TICKET_ARCHIVE_AFTER_HOURS"] == 24
    assert config["BACKUP_DIR"] == str(tmp_path / "backups")
    assert config["MAIL_SERVER"] == "localhost" and config["MAIL_PORT"] == 25
    assert config["JOBS_EAGER"] is False
    assert config["ITSM_ENV"] == "development"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ITSM_ENV": "staging"}, "ITSM_ENV"),
        ({"TIME_ZONE": "Mars/Olympus"}, "TIME_ZONE"),
        ({"TIME_ZONE": "localtime"}, "TIME_ZONE"),  # the host's zone file, not an IANA zone
        ({"TIME_ZONE": "Factory"}, "TIME_ZONE"),
        ({"TICKET_ARCHIVE_AFTER_HOURS": "soon"}, "TICKET_ARCHIVE_AFTER_HOURS"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(tmp_path, env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(str(tmp_path), env=env)


def test_production_requires_a_secret_key(tmp_path):
    config = load_config(str(tmp_path), env={"ITSM_ENV": "production"})
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        ensure_secret_key(config, str(tmp_path))
    assert not (tmp_path / "secret_key").exists()


def test_development_generates_one_secret_and_keeps_it(tmp_path):
    first = load_config(str(tmp_path), env={})
    ensure_secret_key(first, str(tmp_path))
    second = load_config(str(tmp_path), env={})
    ensure_secret_key(second, str(tmp_path))
    assert first["SECRET_KEY"] == second["SECRET_KEY"]
    assert len(first["SECRET_KEY"]) >= 64
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"


def test_production_without_secret_exits_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env.update(ITSM_ENV="production", DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}", FLASK_APP="wsgi")
    result = subprocess.run([sys.executable, "-m", "flask", "routes"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines == ["itsm: configuration error: SECRET_KEY must be set when ITSM_ENV=production"]


def test_utc_datetime_refuses_naive_values():
    from datetime import datetime

    with pytest.raises(ValueError, match="naive"):
        UTCDateTime().process_bind_param(datetime(2026, 1, 1), dialect=type("D", (), {"name": "sqlite"}))


def test_job_loggers_are_quiet_in_production_unless_told(tmp_path):
    assert load_config(str(tmp_path), env={})["JOBS_LOG_LEVEL"] == "INFO"
    production = {"ITSM_ENV": "production", "SECRET_KEY": "x" * 32}
    assert load_config(str(tmp_path), env=production)["JOBS_LOG_LEVEL"] == "WARNING"
    assert load_config(str(tmp_path), env={**production, "LOG_LEVEL": "debug"})["JOBS_LOG_LEVEL"] == "DEBUG"
