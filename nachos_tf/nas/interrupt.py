"""Ctrl-C that always stops a search.

Python raises KeyboardInterrupt wherever the main thread happens to be when SIGINT arrives; if that is a
weakref callback or a ``__del__`` (TensorFlow runs many), the exception is printed as "Exception ignored"
and lost, and the search goes on. `InterruptGuard` records the signal as well, and the search checks the
record at safe points (after each archived candidate, after each generation), so a Ctrl-C stops it there
at the latest, with the archive intact.
"""
from __future__ import annotations

import signal
import threading
from typing import Any, Optional

__all__ = ["InterruptGuard", "check_interrupt"]

_STATE = {"pending": False}


def check_interrupt() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C arrived since the guard was entered (and was swallowed)."""
    if _STATE["pending"]:
        _STATE["pending"] = False
        raise KeyboardInterrupt


class InterruptGuard:
    """Context manager: while active, SIGINT both raises KeyboardInterrupt (as usual) and is remembered
    for `check_interrupt`. Only installs itself in the main thread; elsewhere it does nothing."""

    def __init__(self) -> None:
        self._old: Optional[Any] = None

    def _handler(self, signum, frame) -> None:
        _STATE["pending"] = True
        raise KeyboardInterrupt

    def __enter__(self) -> "InterruptGuard":
        _STATE["pending"] = False
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None
        _STATE["pending"] = False
