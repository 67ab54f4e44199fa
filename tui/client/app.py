"""The sdtui app: composes the screens around one Session (the settings, the connection to
the sdtui server, the history), and holds the app-wide keys."""

from __future__ import annotations

import gc
from functools import cached_property

from textual.app import App
from textual.binding import Binding

from tui.client.terminal_features import TerminalFeatures
from tui.client.palette_actions import PaletteActions
from tui.config import Settings
from tui.locations import Locations, locations, styles_dir
from tui.client.messages import Arrived, LoadIntoPrompt, QueueRequest
from tui.client.screens.main import MainScreen
from tui.client.session import Session
from tui.client.widgets.log import LogForwarder


def _collect_garbage_again() -> None:
    """After the first frame: the cyclic garbage collector, off while the app started (tui/cli/main.py),
    back on. What start-up made is set aside first (a few thousand of its 100,000 objects are
    garbage), so no collection goes through all of it again, a pause of 0.06 s."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _palette_entries():
    """The palette's own entries, loaded when it first opens."""
    from tui.client.commands import SdtuiCommands

    return SdtuiCommands


class SdtuiApp(App[int]):
    TITLE = "sdtui"
    CSS_PATH = str(styles_dir() / "app.tcss")
    COMMANDS = App.COMMANDS | {_palette_entries}
    BINDINGS = [
        Binding("f1", "help", "Help", id="help"),
        Binding("f2", "history", "History", id="history"),
        Binding("f3", "models", "Models", id="models"),
        Binding("ctrl+n", "networks", "LoRAs and embeddings", id="networks", show=False),
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True),
        # No key the prompt's own editing uses (Input takes ctrl+a/e/d/k/u/w/x/v/c).
        Binding("ctrl+t", "focus_prompt", "Back to the prompt", id="focus-prompt", show=False, priority=True),
    ]

    def __init__(self, settings: Settings, allow_pickle: bool = False, places: Locations | None = None,
                 save: bool = True, host=None) -> None:
        """``host``: stands the server up in this process (``--no-server``, the tests), else the app
        connects to the server for this sdtui home, starting one when none runs."""
        super().__init__()
        self.session = Session(settings, places or locations(), host=host, allow_pickle=allow_pickle, save=save)
        self.places = self.session.places
        self.main_screen = MainScreen(self.session)
        self.palette = PaletteActions(self)
        self.terminal = TerminalFeatures(self)
        self._forwarder = LogForwarder(self.main_screen.take)

    @property
    def settings(self) -> Settings:
        return self.session.settings

    @property
    def history(self):
        return self.session.history

    # --- start and stop -----------------------------------------------------------------

    def get_default_screen(self) -> MainScreen:
        return self.main_screen

    def on_mount(self) -> None:
        self.sub_title = "starting…"
        self._forwarder.attach()
        self.terminal.catch_stop_signals(self.shutdown)  # as Ctrl+Q does: the server's jobs go on
        self.session.post = self.main_screen.take
        self.session.wake = lambda: self.post_message(Arrived())  # from the link's thread
        # Connecting may start the server, which imports torch: after the first frame. The
        # terminal is asked what it can draw then too, so no answer can hold up the first frame.
        self.call_after_refresh(self.session.start)
        self.call_after_refresh(self.terminal.detect_graphics)
        self.call_after_refresh(_collect_garbage_again)

    def shutdown(self, code: int = 0) -> None:
        self._leave()
        self.exit(code)

    async def action_quit(self) -> None:
        self.shutdown(0)

    def _leave(self) -> None:
        self.terminal.release_stop_signals()
        self._forwarder.detach()
        self.session.close()

    def on_unmount(self) -> None:
        self._leave()

    def get_driver_class(self):  # asked while App.__init__ runs, before self.terminal exists
        return TerminalFeatures.driver_class(super().get_driver_class())

    def push_screen(self, screen, *args, **kwargs):
        self.terminal.forget_pictures()
        return super().push_screen(screen, *args, **kwargs)

    def pop_screen(self):
        self.terminal.forget_pictures()
        return super().pop_screen()

    def on_arrived(self, _message: Arrived) -> None:
        self.session.drain()

    # --- what the screens ask for ---------------------------------------------------------

    def on_queue_request(self, intent: QueueRequest) -> None:
        problem = self.session.queue(intent.request, intent.what)  # the log says "job N queued" when it is
        if problem:
            self.notify(f"Not queued: {problem}.", severity="error", timeout=8)
        else:
            self.notify(intent.said, timeout=intent.timeout)

    def on_load_into_prompt(self, intent: LoadIntoPrompt) -> None:
        self.back_to_main()
        self.main_screen.fill(intent.request.to_dict())
        self.notify(intent.said, timeout=3)

    def on_open_viewer(self, intent) -> None:
        self.open_viewer(intent.entry)

    def notify(self, message: str, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Textual's toast, as plain text by default: sdtui's messages hold prompts, paths and keys
        such as "[", which markup would eat or misread."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    @cached_property
    def toast_slots(self):
        """Toasts that replace the last of their slot (a key pressed again and again)."""
        from tui.client.toasts import ToastSlots  # with the first such key, not the first frame

        return ToastSlots(self)

    # --- actions ------------------------------------------------------------------------

    def action_help(self) -> None:
        from tui.client.screens.help import HelpScreen, every_binding

        self.push_screen(HelpScreen(every_binding(self.BINDINGS)))

    def get_system_commands(self, screen):
        from tui.client.commands import with_help_for_keys

        return with_help_for_keys(super().get_system_commands(screen), self.action_help)

    def action_history(self) -> None:
        self.open_history(None)

    def back_to_main(self) -> None:
        """Close every screen and dialog above the main screen."""
        while self.screen is not self.main_screen and len(self.screen_stack) > 1:
            self.pop_screen()

    def action_focus_prompt(self) -> None:
        self.back_to_main()
        # At once, not as focus() does after the keys already queued: typing right after Ctrl+T goes
        # to the prompt, not to the field that had focus.
        self.main_screen.set_focus(self.main_screen.query_one("#prompt"))

    def open_viewer(self, entry) -> None:
        from tui.client.screens.viewer import ViewerScreen

        self.push_screen(ViewerScreen(self.history, entry))

    def action_view_latest(self) -> None:
        entry = self.history.latest_done()
        if entry is None:
            self.notify("No image yet: type a prompt and press Enter.", timeout=3)
            return
        self.open_viewer(entry)

    def open_history(self, entry_id: int | None) -> None:
        from tui.client.screens.history import HistoryScreen

        if isinstance(self.screen, HistoryScreen):
            return
        self.push_screen(HistoryScreen(self.history, select_id=entry_id))

    def action_models(self) -> None:
        self.palette.pick_model()

    def action_networks(self) -> None:
        self.palette.pick_network()

