"""What ``flask worker --with-scheduler`` runs beside the workers: the periodic-job scheduler."""

from __future__ import annotations

from flask import Flask


def run_scheduler(app: Flask) -> int:
    from itsm.extensions import db
    from jobs.periodic import run_scheduler as run

    with app.app_context():
        db.engine.dispose(close=False)  # forked: never reuse the parent's connections
    return run(app)
