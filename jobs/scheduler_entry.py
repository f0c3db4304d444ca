"""What ``flask worker --with-scheduler`` runs beside the workers: the periodic-job scheduler."""

from __future__ import annotations

from flask import Flask


def run_scheduler(app: Flask) -> int:
    from itsm.placeholders import wait_for_signal

    wait_for_signal("scheduler")
    return 0
