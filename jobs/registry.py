"""Every task known to this process, by name."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from jobs.exceptions import UnknownTaskError

if TYPE_CHECKING:
    from jobs.task import Task

# Modules that define the product's tasks; a worker imports them all at start.
TASK_MODULES: tuple[str, ...] = ("jobs.diagnostics", "jobs.recurring", "jobs.housekeeping",
                                   "jobs.backups", "jobs.mail", "jobs.notices")

_tasks: dict[str, Task] = {}


def register(task: Task) -> None:
    existing = _tasks.get(task.name)
    if existing is not None and existing.fn.__qualname__ != task.fn.__qualname__:
        raise ValueError(f"two tasks are named {task.name!r}")
    _tasks[task.name] = task


def get(name: str) -> Task:
    try:
        return _tasks[name]
    except KeyError:
        known = ", ".join(sorted(_tasks)) or "none"
        raise UnknownTaskError(f"unknown task {name!r} (known tasks: {known})") from None


def all_tasks() -> dict[str, Task]:
    return dict(_tasks)


def load(extra_modules: tuple[str, ...] = ()) -> None:
    """Import the task modules so every task is registered (idempotent)."""
    for module in (*TASK_MODULES, *extra_modules):
        importlib.import_module(module)
