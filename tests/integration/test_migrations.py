"""The schema comes only from migrations, and they match the models on both databases."""

from __future__ import annotations

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


def test_downgrade_to_base_and_back(database_url, tmp_path):
    # Use a scratch copy of the schema: a fresh SQLite file, or a new schema-less PostgreSQL database.
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'scratch.db'}"
        drop = None
    else:
        admin = sa.create_engine(database_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
        name = database_url.rsplit("/", 1)[1] + "_scratch"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = database_url.rsplit("/", 1)[0] + "/" + name

        def drop():
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    try:
        app = create_app(base_config(url))
        with app.app_context():
            upgrade()
            downgrade(revision="base")
            assert sa.inspect(db.engine).get_table_names() == ["alembic_version"]
            upgrade()
            assert {"tickets", "users", "board_columns", "ticket_events", "comments"} <= set(
                sa.inspect(db.engine).get_table_names())
            db.engine.dispose()
    finally:
        if drop:
            drop()


def test_search_uses_trigram_index_on_postgres(app):
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("trigram indexes exist on PostgreSQL only")
        indexes = {row[0] for row in db.session.execute(sa.text(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'tickets'"))}
        assert {"ix_tickets_title_trgm", "ix_tickets_description_trgm"} <= indexes
