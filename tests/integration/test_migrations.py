"""The schema comes only from migrations, and they match the models on both databases."""

from __future__ import annotations

import contextlib

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from itsm import create_app
from itsm.extensions import db
from tests.conftest import base_config


def test_models_match_migrations(app):
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": True,
            "include_object": lambda obj, name, type_, *_: not (type_ == "index" and name.endswith("_trgm")),
        })
        assert compare_metadata(context, db.metadata) == []


@contextlib.contextmanager
def scratch_database(database_url: str, tmp_path):
    """A fresh SQLite file, or a new schema-less PostgreSQL database, dropped afterwards."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    admin = sa.create_engine(database_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    name = database_url.rsplit("/", 1)[1] + "_scratch"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield database_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_downgrade_to_base_and_back(database_url, tmp_path):
    with scratch_database(database_url, tmp_path) as url:
        app = create_app(base_config(url))
        with app.app_context():
            upgrade()
            downgrade(revision="base")
            assert sa.inspect(db.engine).get_table_names() == ["alembic_version"]
            upgrade()
            assert {"tickets", "users", "board_columns", "ticket_events", "comments"} <= set(
                sa.inspect(db.engine).get_table_names())
            db.engine.dispose()


def test_upgrading_a_database_with_an_interval_beyond_ten_years(database_url, tmp_path):
    """The old form allowed a billion days: the upgrade disables and marks such a task instead of failing."""
    with scratch_database(database_url, tmp_path) as url:
        app = create_app(base_config(url))
        with app.app_context():
            upgrade(revision="0008_accounts")
            db.session.execute(sa.text("INSERT INTO interval_schedules (id, every, period) VALUES "
                                       "(1, 1000000000, 'days'), (2, 10, 'minutes')"))
            for task_id, interval_id in ((1, 1), (2, 2)):
                db.session.execute(sa.text(
                    "INSERT INTO periodic_tasks (id, name, task, interval_id, args, kwargs, one_off, enabled, "
                    "description, source, misfire_policy, catchup_window_seconds, overlap_policy, jitter_seconds, "
                    "overridden, total_run_count, date_changed, created_at) VALUES (:id, :name, 't.add', :interval, "
                    "'[]', '{}', false, true, '', 'admin', 'once', 86400, 'skip', 0, false, 0, CURRENT_TIMESTAMP, "
                    "CURRENT_TIMESTAMP)"), {"id": task_id, "name": f"task-{task_id}", "interval": interval_id})
            db.session.commit()
            upgrade()
            rows = db.session.execute(sa.text(
                "SELECT t.name, t.enabled, t.invalid_reason, i.every, i.period FROM periodic_tasks t "
                "JOIN interval_schedules i ON i.id = t.interval_id ORDER BY t.id")).all()
            huge, fine = rows
            assert not huge.enabled and "longer than 10 years" in huge.invalid_reason
            assert (huge.every, huge.period) == (3653, "days")
            assert fine.enabled and fine.invalid_reason is None and (fine.every, fine.period) == (10, "minutes")
            with pytest.raises(sa.exc.IntegrityError):  # and the rule holds from now on
                db.session.execute(sa.text("UPDATE interval_schedules SET every = 3654 WHERE id = 1"))
            db.session.rollback()
            db.engine.dispose()


def test_search_uses_trigram_index_on_postgres(app):
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("trigram indexes exist on PostgreSQL only")
        indexes = {row[0] for row in db.session.execute(sa.text(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'tickets'"))}
        assert {"ix_tickets_title_trgm", "ix_tickets_description_trgm"} <= indexes
