"""Exit statuses, the one-line messages on stderr, and what Ctrl-C, SIGTERM and SIGHUP do,
shared by every command."""

from __future__ import annotations

import signal
import sys
import threading

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def say(message: str, newline_first: bool = False) -> None:
    """One line on stderr, with any control characters (from a path or a model name) shown inert."""
    from tui.text import visible

    print(("\n" if newline_first else "") + "sdtui: " + visible(message), file=sys.stderr)


STOP_SIGNALS = {"SIGINT": "Ctrl-C", "SIGTERM": "SIGTERM", "SIGHUP": "the terminal hung up"}


class Interrupts:
    """Ctrl-C, SIGTERM or SIGHUP cancel at the end of the current step (``cancel`` is set), so the
    job is recorded and the history closed; a second one quits at once. With ``hang_up_leaves``
    (a client of the server) SIGHUP cancels nothing: it sets ``hung_up``, and the job goes on."""

    def __init__(self, hang_up_leaves: bool = False):
        self.first = 0
        self.cancel = threading.Event()
        self.hung_up = threading.Event()
        self.hang_up_leaves = hang_up_leaves
        for name in STOP_SIGNALS:
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), self._handle)

    def _handle(self, signum, frame) -> None:
        if self.hang_up_leaves and signum == getattr(signal, "SIGHUP", None):
            self.first = self.first or signum
            self.hung_up.set()
            return
        if self.first:
            raise KeyboardInterrupt
        self.first = signum
        cause = STOP_SIGNALS.get(signal.Signals(signum).name, "a signal")
        try:
            say(f"{cause}: cancelling after this step (again to quit at once)", newline_first=True)
        except OSError:
            pass  # the terminal is gone
        self.cancel.set()

    @property
    def exit_status(self) -> int:
        """128 + the first signal's number, or 0 when none came."""
        return 128 + self.first if self.first else 0
