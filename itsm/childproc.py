"""Child processes that die with the process that started them (Linux PR_SET_PDEATHSIG)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def dies_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` arming PR_SET_PDEATHSIG: the child gets ``sig`` when the thread that started it dies,
    however it dies (SIGKILL included); None where Linux's prctl is not available. It only calls prctl and
    getppid (async-signal-safe, fine after fork in a process with threads)."""
    if _prctl is None:
        return None
    parent, number = os.getpid(), int(sig)

    def arm() -> None:
        _prctl(_PR_SET_PDEATHSIG, number, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)
    return arm
