"""What the app does with its terminal past Textual's drawing: pictures through a graphics
protocol once the terminal says it can (half blocks until then), the bell and desktop
notification when the queue empties with the terminal out of focus, and leaving when the
terminal hangs up or SIGTERM comes, even if the terminal is gone."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from typing import Callable

from tui.text import plural

log = logging.getLogger("tui.client.app")
EXIT_GRACE_S = 5.0  # how long an exit after a hang-up or SIGTERM may take before the process ends regardless
STOP_SIGNALS = {getattr(signal, "SIGHUP", None): "the terminal hung up", signal.SIGTERM: "asked to stop (SIGTERM)"}


class ExitWatchdog(threading.Thread):
    """Ends the process EXIT_GRACE_S after it is armed, if the orderly exit has not ended it.

    A terminal that hangs up can leave Textual unable to finish: its writer thread, failing or
    blocked on the dead terminal, leaves a full queue that the exit then waits on for ever
    (seen: apps alive an hour after tmux killed their session, each keeping the sdtui server
    from its idle exit). ``arm`` only sets an Event that nothing else holds, so a signal handler
    may call it wherever the main thread was stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="sdtui-exit-watchdog")
        self._armed = threading.Event()
        self.code = 1

    def arm(self, code: int) -> None:
        self.code = code
        self._armed.set()

    def run(self) -> None:
        self._armed.wait()
        time.sleep(EXIT_GRACE_S)
        log.warning("the exit did not finish in %.0f s (the terminal is gone); exiting anyway", EXIT_GRACE_S)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(self.code)


class TerminalFeatures:
    """The app's terminal past Textual's drawing, held by the app as ``app.terminal``: how it
    draws pictures (``graphics``, the Choice, None until decided; ``cell_size``, pixels per cell,
    when the terminal said), the signals that end the app, the bell and notification."""

    def __init__(self, app) -> None:
        self.app = app
        self.graphics = None
        self.cell_size: tuple[int, int] | None = None
        self._signals_before: dict = {}

    def catch_stop_signals(self, stop: Callable[[int], None]) -> None:
        """SIGHUP and SIGTERM call ``stop(exit_code)`` on the app's loop, the code saying which signal
        it was (128 + its number). The handler is a plain one, not the loop's: it runs even when the
        loop is stuck writing to a terminal that went away. It also arms the ExitWatchdog, and gives
        SIGCONT (which a hang-up brings) back its default, so Textual does not start drawing again on
        the dead terminal."""
        loop = asyncio.get_running_loop()
        watchdog = ExitWatchdog()

        def stop_for(signum: int) -> None:
            log.info("%s; stopping", STOP_SIGNALS[signum])
            stop(128 + signum)

        def on_signal(signum, frame) -> None:
            if hasattr(signal, "SIGCONT"):
                signal.signal(signal.SIGCONT, signal.SIG_DFL)
            watchdog.arm(128 + signum)
            try:
                loop.call_soon_threadsafe(stop_for, signum)
            except RuntimeError:
                pass  # the loop has closed: the app is on its way out, and the watchdog sees it ends

        try:
            self._signals_before = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS if signum}
        except ValueError:
            return  # not the main thread
        watchdog.start()

    def release_stop_signals(self) -> None:
        """The handlers from before the app (the test runner's, when the app runs in tests)."""
        for signum, handler in self._signals_before.items():
            signal.signal(signum, handler)
        self._signals_before = {}

    @staticmethod
    def driver_class(default):
        """Textual's Linux driver, able to take the terminal's answers out of its input."""
        from textual.drivers.linux_driver import LinuxDriver

        if default is LinuxDriver:
            from tui.client.terminal import QueryingDriver

            return QueryingDriver
        return default

    def detect_graphics(self) -> None:
        from tui.client.terminal import detect_graphics

        detect_graphics(self.app, self.app.settings.graphics, self.use_graphics)

    def use_graphics(self, choice) -> None:
        from tui.client.widgets.thumbnail import Thumbnail

        before = self.graphics  # the same choice may come again, with the terminal's answers
        self.graphics = choice
        if before is None or (before.protocol, before.reason, before.passthrough) != \
                (choice.protocol, choice.reason, choice.passthrough):
            tmux = " through tmux passthrough" if choice.passthrough else ""
            log.info("pictures: %s%s (%s)", "half blocks" if choice.protocol == "halfblock" else choice.protocol,
                     tmux, choice.reason)
        if choice.warning and (before is None or before.warning != choice.warning):
            log.warning("%s", choice.warning)
        if choice.protocol != "halfblock":
            for picture in self.app.screen.query(Thumbnail):
                picture.redraw()

    def forget_pictures(self) -> None:
        """Pictures drawn with the Kitty protocol float above the text: the screen going behind
        another (or away) takes its own along."""
        if self.graphics is None or self.graphics.protocol != "kitty" or not self.app.screen_stack:
            return
        from tui.client.widgets.thumbnail import Thumbnail

        for picture in self.app.screen.query(Thumbnail):
            picture.forget_graphics()

    def queue_done(self, images: int) -> None:
        """The queue emptied: with the terminal unfocused, the bell and a desktop notification."""
        app = self.app
        if not app.settings.bell or getattr(app, "app_focus", True):
            return
        from tui.client.widgets.graphics import done_notification

        app.bell()
        body = f"{plural(images, 'image')} done" if images else "the queue is done"
        self.write(done_notification("sdtui", body, in_tmux=bool(os.environ.get("TMUX"))))

    def write(self, sequence: str) -> None:
        """An escape sequence straight to the terminal, past Textual's drawing."""
        driver = self.app._driver
        if driver is not None and not self.app.is_headless:
            driver.write(sequence)
            driver.flush()
