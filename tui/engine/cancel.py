"""Each load or job runs with its own cancel token, so a cancel stops the operation running now
and never one that starts later."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator


class CancelScope:
    def __init__(self):
        self._active: threading.Event | None = None  # the running operation's token; None when idle
        self._lock = threading.Lock()

    @contextmanager
    def operation(self, cancel: threading.Event | None = None) -> Iterator[threading.Event]:
        """Make ``cancel`` (or a new token) the one that ``cancel()`` sets while the block runs.
        An operation inside another without a token of its own keeps the outer one's."""
        with self._lock:
            outer = self._active
            token = cancel or outer or threading.Event()
            self._active = token
        try:
            yield token
        finally:
            with self._lock:
                self._active = outer

    def cancel(self) -> bool:
        """Set the running operation's token. Thread-safe. With nothing running it does nothing
        and returns False."""
        with self._lock:
            if self._active is None:
                return False
            self._active.set()
            return True
