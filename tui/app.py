"""The sdtui app: composes the screens, owns the settings, the history and the
generation thread. Reports from that thread become messages for the main screen."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from pathlib import Path

from textual.app import App
from textual.binding import Binding

from tui.commands import SdtuiCommands
from tui.config import Settings, save_settings
from tui.engine.catalog import load_recent, remember_recent
from tui.engine.events import Loaded
from tui.engine.families import ModelFamily, defaults_on_switch
from tui.engine.runner import Engine, EngineOptions
from tui.generation import GenerationService, ImageSaved, ServiceCrashed
from tui.locations import Locations, locations, styles_dir
from tui.messages import LogLine, wrap
from tui.screens.ask import AskScreen
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.store.history import History
from tui.store.thumbs import ThumbnailCache
from tui.widgets.log import LogForwarder, LogPanel
from tui.widgets.settings import SettingsPanel
from tui.wording import clean_pasted_path

log = logging.getLogger("tui.app")
# How long quitting waits for the running step to end, so the job is recorded as cancelled; a
# longer step (a large image on a slow device) is left unrecorded, with nothing lost but the job.
QUIT_GRACE_S = 0.6


def engine_options(settings: Settings, allow_pickle: bool) -> EngineOptions:
    return EngineOptions(model=settings.model, device=settings.device, dtype=settings.dtype,
                         attention_slicing=settings.attention_slicing, warmup=settings.warmup,
                         allow_pickle=allow_pickle, previews=settings.previews,
                         preview_interval=settings.preview_interval, preview_max_fps=settings.preview_max_fps)


def every_binding() -> list[tuple[str, Binding]]:
    """(where, binding) for every screen's keys, so F1 help lists them all, from the bindings."""
    from tui.screens.compare import CompareScreen
    from tui.screens.history import HistoryScreen
    from tui.screens.viewer import ViewerScreen
    from tui.widgets.prompt import PromptInput
    from tui.widgets.thumbnail import OpenablePicture

    def described(where: str, bindings) -> list[tuple[str, Binding]]:
        return [(where, b if isinstance(b, Binding) else Binding(*b)) for b in bindings]

    return [
        *described("anywhere", SdtuiApp.BINDINGS),
        ("anywhere", Binding("ctrl+p", "command_palette", "Command palette")),
        *described("main", MainScreen.BINDINGS),
        *described("prompt", PromptInput.BINDINGS),
        ("prompt", Binding("enter", "submit", "Generate (queues while a job runs)")),
        *described("history", HistoryScreen.BINDINGS),
        *described("history, compare", OpenablePicture.BINDINGS),
        *described("compare", CompareScreen.BINDINGS),
        *described("viewer", ViewerScreen.BINDINGS),
    ]


class SdtuiApp(App[int]):
    TITLE = "sdtui"
    CSS_PATH = str(styles_dir() / "app.tcss")
    COMMANDS = App.COMMANDS | {SdtuiCommands}
    BINDINGS = [
        Binding("f1", "help", "Help", id="help"),
        Binding("f2", "history", "History", id="history"),
        Binding("f3", "models", "Models", id="models"),
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True),
        # No key the prompt's own editing uses (Input takes ctrl+a/e/d/k/u/w/x/v/c).
        Binding("ctrl+t", "focus_prompt", "Back to the prompt", id="focus-prompt", show=False, priority=True),
    ]

    def __init__(self, settings: Settings, allow_pickle: bool = False, places: Locations | None = None,
                 save: bool = True) -> None:
        super().__init__()
        self.settings = settings
        self.allow_pickle = allow_pickle
        self.places = places or locations()
        self.save = save
        outputs = Path(settings.outputs_dir).expanduser() if settings.outputs_dir else self.places.outputs_dir
        self.history = History(self.places.history_db, outputs)
        self.thumbs = ThumbnailCache(self.places.data_dir / "thumbs")
        self.engine = Engine(engine_options(settings, allow_pickle))
        self.service = GenerationService(self.engine, self.history, self._report)
        self.main_screen = MainScreen()
        self._forwarder = LogForwarder(self._post_log)
        self.family: ModelFamily | None = None  # of the loaded model
        self._switching_from: ModelFamily | None = None
        self._switching = False  # the user picked another model; its family's defaults apply once loaded
        self.graphics = None  # a graphics Choice once decided after the first frame; half blocks until then
        self.cell_size: tuple[int, int] | None = None  # pixels per cell, when the terminal said

    # --- start and stop -----------------------------------------------------------------

    def on_mount(self) -> None:
        self.push_screen(self.main_screen)
        self.sub_title = "starting…"
        root = logging.getLogger()
        root.addHandler(self._forwarder)
        if root.getEffectiveLevel() > logging.INFO:
            root.setLevel(logging.INFO)
        self.main_screen.recall.prompts.extend(self.history.recent_prompts())
        for signum, cause in ((getattr(signal, "SIGHUP", None), "the terminal hung up"),
                              (signal.SIGTERM, "asked to stop (SIGTERM)")):
            try:
                asyncio.get_running_loop().add_signal_handler(signum, self._stop_on_signal, signum, cause)
            except (NotImplementedError, RuntimeError, ValueError, TypeError):
                pass  # not on this platform, or not the main thread (tests)
        # A daemon thread rather than a Textual thread worker: those run in asyncio's executor,
        # which is joined at exit, so quitting during a long model load would hang.
        self._thread = threading.Thread(target=self.service.serve, name="sdtui-generation", daemon=True)
        self._thread.start()
        # Loading imports torch; start it once the first frame is on screen. The terminal is
        # asked what it can draw then too, so no answer can hold up the first frame.
        self.call_after_refresh(self._first_load)
        self.call_after_refresh(self._detect_graphics)

    def _first_load(self) -> None:
        report = self.history.reconcile()
        if report.changed:
            self.notify(report.message(), severity="warning", timeout=10)
        self.service.load(engine_options(self.settings, self.allow_pickle))

    # --- pictures: half blocks or a graphics protocol --------------------------------------

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

    def _stop_on_signal(self, signum: int, cause: str) -> None:
        """Stop as Ctrl+Q does: the running job ends at its step and is recorded, the
        terminal is restored, and the exit status says which signal it was."""
        log.info("%s; stopping", cause)
        self.shutdown(128 + signum)

    def shutdown(self, code: int = 0) -> None:
        self._stop_generation()
        self.exit(code)

    async def action_quit(self) -> None:
        self.shutdown(0)

    def _stop_generation(self) -> None:
        """Cancel the running job and give it until the end of its step; a model load in
        progress is abandoned (the history is consistent at every moment by design)."""
        self.service.stop()
        logging.getLogger().removeHandler(self._forwarder)
        thread = getattr(self, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(QUIT_GRACE_S)

    def on_unmount(self) -> None:
        self._stop_generation()
        if not self.service.busy:
            self.history.close()

    # --- from the generation thread -------------------------------------------------------

    def _report(self, report: object) -> None:
        if isinstance(report, ServiceCrashed):
            self.call_from_thread(self.notify, f"The generation thread stopped ({report.message}); restart sdtui.",
                                  severity="error", timeout=30)
        self.main_screen.post_message(wrap(report))

    def _post_log(self, level: str, text: str, created: float) -> None:
        self.main_screen.post_message(LogLine(level, text, created))

    def image_finished(self, report: ImageSaved) -> None:
        if self.settings.bell and not getattr(self, "app_focus", True):
            self.bell()

    # --- settings -----------------------------------------------------------------------

    def settings_changed(self, settings: Settings, key: str, reload: bool) -> None:
        self.settings = settings
        options = self.engine.options
        options.previews = settings.previews
        options.attention_slicing = settings.attention_slicing
        options.preview_interval, options.preview_max_fps = settings.preview_interval, settings.preview_max_fps
        if self.save:
            try:
                save_settings(settings, self.places.config_file)
            except OSError as error:
                self.notify(f"Settings not saved: {error.strerror} ({self.places.config_file})", severity="warning")
        if not reload:
            return
        if key == "model" and settings.model == self.engine.loaded_model and not self.service.loading:
            self.main_screen.log_line(f"{settings.model} is already loaded; nothing to do")
            return
        if key == "model":
            self._switching, self._switching_from = True, self.family
        ahead = self.service.waiting() + (1 if self.service.busy else 0)
        if ahead:
            what = settings.model if key == "model" else f"the model with {key} {getattr(settings, key)}"
            self.main_screen.log_line(f"loading {what} after the {ahead} job(s) ahead of it")
            self.sub_title = f"{self.sub_title.split(' · waiting')[0]} · waiting: {what} loads after {ahead} job(s)"
        self.service.load(engine_options(settings, self.allow_pickle))

    def model_kept(self, model: str) -> None:
        """A switch failed and ``model`` is still loaded: the settings say so again (no reload)."""
        self._switching = False
        panel = self.main_screen.query_one(SettingsPanel)
        panel.set_value("model", model, announce=False)
        self.settings_changed(panel.settings, "model", reload=False)
        self.sub_title = f"{self.engine.model_label} · {self.engine.device} · {self.engine.dtype}"

    def use_model(self, model: str) -> None:
        self.main_screen.query_one(SettingsPanel).set_value("model", model)

    def models_dir(self) -> Path:
        return Path(self.settings.models_dir).expanduser() if self.settings.models_dir else self.places.models_dir

    def model_loaded(self, report: Loaded) -> None:
        """Remember the model as recently used and, when the user just switched to it, apply
        its family's defaults (size; steps and guidance for Turbo), saying what changed."""
        remember_recent(self.places.recent_models_file, self.settings.model)
        family = report.family_info
        self.family = family
        if not (self._switching and family is not None):
            return
        self._switching = False
        if not self.settings.family_defaults:
            return
        panel = self.main_screen.query_one(SettingsPanel)
        changes = {k: v for k, v in defaults_on_switch(self._switching_from, family).items()
                   if getattr(self.settings, k) != v}
        for key, value in changes.items():
            panel.set_value(key, value if key != "guidance" else f"{value:g}")
        if changes:
            summary = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in changes.items())
            self.main_screen.log_line(f"{family.label} defaults applied: {summary} (change them in settings; "
                                      "family_defaults = false in config.toml turns this off)")
            self.notify(f"{family.label}: {summary}", timeout=5)

    # --- actions ------------------------------------------------------------------------

    def action_help(self) -> None:
        self.push_screen(HelpScreen(every_binding()))

    def get_system_commands(self, screen):
        """Textual's own palette commands, with its "Keys" panel (which Escape does not close)
        replaced by F1 help, which lists every screen's keys and closes with Escape."""
        from textual.app import SystemCommand

        for command in super().get_system_commands(screen):
            if command.title == "Keys":
                yield SystemCommand("Keys", "Every key, on every screen (F1)", self.action_help)
            else:
                yield command

    def action_history(self) -> None:
        self.open_history(None)

    def back_to_main(self) -> None:
        """Close every screen and dialog above the main screen."""
        while self.screen is not self.main_screen and len(self.screen_stack) > 1:
            self.pop_screen()

    def action_focus_prompt(self) -> None:
        self.back_to_main()
        self.main_screen.query_one("#prompt").focus()

    def open_viewer(self, entry) -> None:
        from tui.screens.viewer import ViewerScreen

        self.push_screen(ViewerScreen(entry))

    def action_view_latest(self) -> None:
        entry = self.history.latest_done()
        if entry is None:
            self.notify("No image yet: type a prompt and press Enter.", timeout=3)
            return
        self.open_viewer(entry)

    def open_history(self, entry_id: int | None) -> None:
        from tui.screens.history import HistoryScreen

        if isinstance(self.screen, HistoryScreen):
            return
        self.push_screen(HistoryScreen(select_id=entry_id))

    def load_image(self, path: str | None):
        """The full image at ``path`` for a large view, or None when it is missing or unreadable."""
        if not path:
            return None
        from PIL import Image

        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except OSError:
            return None

    def action_import_png(self) -> None:
        from tui.store.images import MetadataError
        from tui.store.importers import import_png

        def chosen(path: str | None) -> None:
            if not path:
                return
            try:
                imported = import_png(Path(clean_pasted_path(path)))
            except MetadataError as error:
                self.notify(str(error), severity="error", timeout=10)
                return
            self.back_to_main()
            self.main_screen.load_values(imported.values)
            name = Path(clean_pasted_path(path)).name
            self.main_screen.log_line(f"imported {imported.source} parameters from {name}")
            for note in imported.notes:
                self.main_screen.log_line(note, "warning")
            more = f" {len(imported.notes)} note(s) in the log." if imported.notes else ""
            self.notify(f"Loaded {imported.source} parameters from {name}.{more}", timeout=8)

        self.push_screen(AskScreen("Import parameters from a PNG: its path", "", "/path/to/image.png"), chosen)

    def action_models(self) -> None:
        from tui.screens.models import ModelPickerScreen

        if isinstance(self.screen, ModelPickerScreen):
            return

        def chosen(model: str | None) -> None:
            if model:
                self.use_model(model)

        self.push_screen(ModelPickerScreen(self.models_dir(), load_recent(self.places.recent_models_file),
                                           self.settings.model), chosen)

    def action_switch_model(self) -> None:
        def chosen(model: str | None) -> None:
            if model:
                self.use_model(clean_pasted_path(model))

        self.push_screen(AskScreen("Model: a Hub id (owner/name), a diffusers folder, a .safetensors "
                                   "checkpoint, or demo",
                                   self.settings.model), chosen)

    def action_toggle_slicing(self) -> None:
        setting = self.main_screen.settings.attention_slicing
        current = self.engine.attention_slicing_active if setting == "auto" else setting == "on"
        value = "off" if current else "on"
        self.main_screen.query_one(SettingsPanel).set_value("attention_slicing", value)
        self.notify(f"Attention slicing {value} from the next job.", timeout=3)

    def action_toggle_previews(self) -> None:
        value = not self.main_screen.settings.previews
        self.main_screen.query_one(SettingsPanel).set_value("previews", value)
        self.notify(f"Previews {'on' if value else 'off'}.", timeout=3)

    def action_copy_path(self) -> None:
        path = self.main_screen.last_path
        if not path:
            latest = self.history.latest_done()  # from an earlier session
            path = latest.image_path if latest else None
        if not path:
            self.notify("No image yet.", timeout=3)
            return
        self.copy_to_clipboard(path)
        self.notify(f"Copied {path}", timeout=4)

    def action_clear_log(self) -> None:
        self.main_screen.query_one(LogPanel).clear_lines()

    def action_show_outputs(self) -> None:
        self.notify(f"Images are saved in {self.history.outputs_dir}", timeout=8)
        self.main_screen.log_line(f"outputs folder: {self.history.outputs_dir}")

    def action_clear_queue(self) -> None:
        self.main_screen.action_clear_queue()


def run(settings: Settings, allow_pickle: bool = False, verbose: bool = False) -> int:
    from tui.logs import setup_logging

    places = locations()
    setup_logging(places.log_file, verbose=False)
    app = SdtuiApp(settings, allow_pickle=allow_pickle, places=places)
    code = app.run()
    return code or 0
