"""Every task known to this process, by name."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from jobs.exceptions import UnknownTaskError

if TYPE_CHECKING:
    from jobs.task import Task

# The runtime's own tasks; the app's task modules are added by create_app, which loads them once.
RUNTIME_MODULES: tuple[str, ...] = ("jobs.diagnostics", "jobs.upkeep")
_modules: list[str] = list(RUNTIME_MODULES)

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


def load(modules: tuple[str, ...] = ()) -> None:
    """Import the task modules (the runtime's, those loaded before, and ``modules``) so every task is
    registered (idempotent)."""
    for module in (*_modules, *modules):
        if module not in _modules:
            _modules.append(module)
        importlib.import_module(module)
