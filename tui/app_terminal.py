"""What the app does with its terminal past Textual's drawing: pictures through a graphics
protocol once the terminal says it can (half blocks until then), and the bell and desktop
notification when the queue empties with the terminal out of focus."""

from __future__ import annotations

import logging
import os

log = logging.getLogger("tui.app")


class TerminalFeatures:
    """Mixed into SdtuiApp (a Textual App with ``settings``): keeps ``graphics`` (the Choice,
    None until decided) and ``cell_size`` (pixels per cell, when the terminal said)."""

    graphics = None
    cell_size: tuple[int, int] | None = None

    def get_driver_class(self):
        from textual.drivers.linux_driver import LinuxDriver

        driver = super().get_driver_class()
        if driver is LinuxDriver:
            from tui.terminal import QueryingDriver

            return QueryingDriver
        return driver

    def _detect_graphics(self) -> None:
        from tui.terminal import detect_graphics

        detect_graphics(self, self.settings.graphics, self._use_graphics)

    def _use_graphics(self, choice) -> None:
        from tui.widgets.thumbnail import Thumbnail

        repeated = self.graphics == choice  # the same choice again, now with the cell's pixel size
        self.graphics = choice
        if not repeated:
            tmux = " through tmux passthrough" if choice.passthrough else ""
            log.info("pictures: %s%s (%s)", "half blocks" if choice.protocol == "halfblock" else choice.protocol,
                     tmux, choice.reason)
        if choice.protocol != "halfblock":
            for picture in self.screen.query(Thumbnail):
                picture.redraw()

    def push_screen(self, screen, *args, **kwargs):
        self._forget_pictures()
        return super().push_screen(screen, *args, **kwargs)

    def pop_screen(self):
        self._forget_pictures()
        return super().pop_screen()

    def _forget_pictures(self) -> None:
        """Pictures drawn with the Kitty protocol float above the text: the screen going behind
        another (or away) takes its own along."""
        if self.graphics is None or self.graphics.protocol != "kitty" or not self.screen_stack:
            return
        from tui.widgets.thumbnail import Thumbnail

        for picture in self.screen.query(Thumbnail):
            picture.forget_graphics()

    def queue_done(self, images: int) -> None:
        """The queue emptied: with the terminal unfocused, the bell and a desktop notification."""
        if not self.settings.bell or getattr(self, "app_focus", True):
            return
        from tui.widgets.graphics import done_notification

        self.bell()
        body = f"{images} image(s) done" if images else "the queue is done"
        self.write_to_terminal(done_notification("sdtui", body, in_tmux=bool(os.environ.get("TMUX"))))

    def write_to_terminal(self, sequence: str) -> None:
        """An escape sequence straight to the terminal, past Textual's drawing."""
        if self._driver is not None and not self.is_headless:
            self._driver.write(sequence)
            self._driver.flush()
