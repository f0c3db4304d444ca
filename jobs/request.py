"""The data the task API and the runtime share: what a running task knows about itself, and what an enqueue
returns. A module of its own, so ``task`` -> ``enqueue`` -> ``runtime`` import one way."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class Request:
    """What a running task knows about itself (Celery's ``self.request``)."""

    id: str | None = None
    retries: int = 0
    attempt: int = 1
    task: str = ""
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    queue: str | None = None
    is_eager: bool = False
    called_directly: bool = True


current: ContextVar[Request | None] = ContextVar("itsm_task_request", default=None)


@dataclass
class JobHandle:
    """What ``delay``/``apply_async`` return: the job id to find it in the audit."""

    id: str
    task: str
    queue: str
    scheduled_for: datetime | None = None
    result: Any = None
