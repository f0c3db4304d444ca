"""itsm: a service desk whose automation can be trusted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from itsm.version import __version__  # noqa: F401  (itsm.__version__)

if TYPE_CHECKING:
    from flask import Flask

def create_app(overrides: dict | None = None) -> Flask:
    """Build the app from the environment; ``overrides`` wins over it (tests). See ``itsm.app``."""
    # Imported here, not at the top: every ``import itsm.<module>`` runs this file first, and the job
    # runtime imports ``itsm.extensions`` and ``itsm.dbtypes``; loading the whole app from here would
    # import each feature (and its tasks, which import the runtime) before the runtime exists.
    from itsm.app import create_app as build

    return build(overrides)
