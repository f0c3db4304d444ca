"""Soft time limits: raise SoftTimeLimitExceeded inside the running job, before the hard limit.

In a worker the job runs in the main thread, so a timer thread signals it (SIGUSR1),
which also interrupts blocking calls such as sleep or a socket read. Elsewhere
(inline runs in a web thread) the exception is set on the running thread directly.
"""

from __future__ import annotations

import ctypes
import signal
import threading
from contextlib import contextmanager

from jobs.exceptions import SoftTimeLimitExceeded

_armed = threading.local()
_SIGNAL = signal.SIGUSR1


def _on_signal(signum, frame):
    if getattr(_armed, "value", False):
        _armed.value = False
        raise SoftTimeLimitExceeded()


def install_signal_handler() -> None:
    """Called once by each worker process (main thread)."""
    signal.signal(_SIGNAL, _on_signal)


def _set_async_exc(thread_id: int, exc) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), exc)


@contextmanager
def soft_time_limit(seconds: float | None):
    if not seconds or seconds <= 0:
        yield
        return
    thread = threading.current_thread()
    use_signal = thread is threading.main_thread() and signal.getsignal(_SIGNAL) is _on_signal
    lock = threading.Lock()
    state = {"armed": True, "fired": False}

    def fire():
        with lock:
            if not state["armed"]:
                return
            state["fired"] = True
            if use_signal:
                signal.pthread_kill(thread.ident, _SIGNAL)  # the handler re-checks _armed in the job's thread
            else:
                _set_async_exc(thread.ident, ctypes.py_object(SoftTimeLimitExceeded))

    _armed.value = True
    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            state["armed"] = False
            _armed.value = False
            if state["fired"] and not use_signal:
                _set_async_exc(thread.ident, None)  # drop it if it has not been raised yet
        timer.cancel()
