"""Soft time limits: raise SoftTimeLimitExceeded inside the running job, before the hard limit.

In a worker the job runs in the main thread, and the worker's watchdog thread signals
it (SIGUSR1) when the limit passes; a signal also interrupts blocking calls such as
sleep or a socket read. Elsewhere (inline runs in a web thread) a timer sets the
exception on the running thread directly.
"""

from __future__ import annotations

import ctypes
import signal
import threading
from contextlib import contextmanager

from jobs.exceptions import SoftTimeLimitExceeded

_SIGNAL = signal.SIGUSR1
_armed = threading.local()
_watchdog = None  # the worker process's Watchdog, when there is one


def _on_signal(signum, frame):
    if getattr(_armed, "value", False):
        _armed.value = False
        raise SoftTimeLimitExceeded()


def install_signal_handler(watchdog=None) -> None:
    """Called once by each worker process (main thread)."""
    global _watchdog
    signal.signal(_SIGNAL, _on_signal)
    _watchdog = watchdog


def signal_main_thread() -> None:
    signal.pthread_kill(threading.main_thread().ident, _SIGNAL)  # the handler re-checks _armed


def _set_async_exc(thread_id: int, exc) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), exc)


@contextmanager
def soft_time_limit(seconds: float | None):
    if not seconds or seconds <= 0:
        yield
        return
    thread = threading.current_thread()
    in_worker = (_watchdog is not None and thread is threading.main_thread()
                 and signal.getsignal(_SIGNAL) is _on_signal)
    if in_worker:
        _armed.value = True
        _watchdog.arm_soft(seconds)
        try:
            yield
        finally:
            _armed.value = False
            _watchdog.disarm_soft()
        return
    lock = threading.Lock()
    state = {"armed": True, "fired": False}

    def fire():
        with lock:
            if state["armed"]:
                state["fired"] = True
                _set_async_exc(thread.ident, ctypes.py_object(SoftTimeLimitExceeded))

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            state["armed"] = False
            if state["fired"]:
                _set_async_exc(thread.ident, None)  # drop it if it has not been raised yet
        timer.cancel()
