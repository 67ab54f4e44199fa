"""The main screen: prompt, settings, live preview, progress and memory, and the log.

What the server says arrives as messages from the Session, one class per event; the
handlers here own every change to the widgets.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace

from rich.cells import cell_len, set_cell_size
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Header, Input

from tui.client.widgets.footer import FittingFooter
from tui.engine.request import RANDOM_SEED_MAX, InvalidRequest, validate_request
from tui.client import messages as m
from tui.client.screens.confirm import ConfirmScreen
from tui.client.session import read_image
from tui.store.history import HistoryEntry, utc_now
from tui.text import clip, plural, visible
from tui.client.wording import DEMO_COMMAND, in_app_wording
from tui.client.widgets.details import settings_line
from tui.client.widgets.log import LogPanel
from tui.client.widgets.prompt import PromptInput, PromptRecall
from tui.client.widgets.safe_input import SafeInput
from tui.client.widgets.settings import SettingsPanel
from tui.client.widgets.stage import Stage
from tui.client.widgets.status import Line, StatusPanel
from tui.client.widgets.strip import RecentStrip, StripItem
from tui.client.widgets.thumbnail import Thumbnail
from tui.wildcards import WildcardError

STEP_KEYS = {"steps": 1, "guidance": 0.5}
# What the picture and the progress lines may send to the terminal while a job runs: an
# SSH link should carry well under 100 KB/s at 200x60 with previews on.
PREVIEW_BYTES_PER_S = 24 * 1024
SETTINGS_MIN_WIDTH = 120  # columns; narrower terminals start with the settings panel hidden


class MainScreen(Screen):
    # The prompt has focus from the first frame, rather than the first focusable widget (the
    # settings panel) and then the prompt: each change of focus restyles every widget on the
    # screen, 0.1 to 0.2 s on a small machine.
    AUTO_FOCUS = "#prompt"
    BINDINGS = [
        # The footer keeps to what a newcomer needs first, so F1 help, F2 history, F3 models and quit
        # still fit at 80 columns; every key is in F1 help (generated from these lists) and the palette.
        Binding("escape", "cancel", "Cancel", id="cancel"),
        Binding("ctrl+o", "app.view_latest", "View", id="view-latest"),
        Binding("ctrl+r", "reroll", "Reroll", id="reroll", show=False),
        Binding("ctrl+l", "toggle_seed_lock", "Seed lock", id="seed-lock", show=False),
        Binding("ctrl+g", "reuse_seed", "Last seed", id="reuse-seed", show=False),
        Binding("f5", "adjust('steps', -1)", "Steps -", id="steps-down", show=False),
        Binding("f6", "adjust('steps', 1)", "Steps +", id="steps-up", show=False),
        Binding("f7", "adjust('guidance', -1)", "Guidance -", id="guidance-down", show=False),
        Binding("f8", "adjust('guidance', 1)", "Guidance +", id="guidance-up", show=False),
        Binding("f9", "clear_queue", "Clear queue", id="clear-queue", show=False),
        Binding("f4", "toggle_settings", "Settings", id="toggle-settings"),
    ]

    def __init__(self, session, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session = session
        self._images_this_run = 0  # saved since the queue last emptied
        self._shown = None  # the finished image on the stage, until it is saved
        self.last_seed: int | None = None
        self.last_path: str | None = None
        self.recall = PromptRecall()
        self._idle_cancel_noted = float("-inf")
        self._making = None  # the request of the running job, its seed resolved
        self._running_job: int | None = None  # the job whose progress the status lines show
        self._making_index = 0  # the image of that job now on its way

    @property
    def settings(self):
        return self.query_one(SettingsPanel).settings

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body"):
            # Narrower terminals show the picture first (F4 shows the settings): hidden from the
            # start, not restyled hidden after the first frame.
            narrow = self.app.size.width < SETTINGS_MIN_WIDTH
            yield SettingsPanel(self.session.settings, id="settings", classes="hidden" if narrow else "")
            with Vertical(id="work"):
                yield PromptInput(self.recall, placeholder="prompt (Enter to generate, Up/Down for earlier prompts)",
                                  id="prompt", compact=True)
                yield SafeInput(self.session.settings.negative_prompt, placeholder="negative prompt", id="negative",
                            compact=True)
                yield Line(id="caption", wrap=False)
                with Stage(id="stage"):
                    yield Thumbnail(id="preview", preview_bytes_per_s=PREVIEW_BYTES_PER_S)
                    with Vertical(id="side"):
                        yield RecentStrip(id="recent")
                        yield LogPanel(id="log")
                yield StatusPanel(id="status")
        yield FittingFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one("#prompt", PromptInput).focus()
        settings = self.session.settings
        self.query_one(Stage).fit_to(settings.width, settings.height)
        self.refresh_recent()
        self.show_seed_lock()
        self._say_colours(self.app.console.color_system)
        self.call_after_refresh(self._show_latest)

    def _show_latest(self) -> None:
        """The last image from history on the stage at start, until a job paints over it."""
        entry = self.session.history.latest_done()
        if entry is None or self.last_path is not None:
            return
        image = read_image(entry.image_path)
        if image is None:
            return
        self.last_seed, self.last_path = entry.seed, entry.image_path
        self.query_one(Stage).fit_to(*image.size)
        self.query_one("#preview", Thumbnail).show(image)
        self.set_caption(entry.prompt, f"{settings_line(entry.seed, entry)} · from history (Ctrl+O to view)")

    def _say_colours(self, system: str | None) -> None:
        """Once a session: what the terminal's colours mean for the pictures."""
        if system == "truecolor":
            self.log_line("terminal: truecolor; pictures in full colour")
        elif system == "256":
            self.log_line("terminal: 256 colours; each picture cell takes the palette colour nearest to it as "
                          "the eye sees it, dithered (COLORTERM=truecolor shows full colour)")
        else:
            self.log_line(f"terminal: {'16' if system else 'no'} colours, so pictures are rough; a 256-colour or "
                          "truecolor terminal shows them properly (TERM=xterm-256color, COLORTERM=truecolor)",
                          "warning")

    def refresh_recent(self) -> None:
        from tui.client.widgets.strip import STRIP_SIZE

        entries = self.session.history.query(status="done", limit=STRIP_SIZE)
        self.query_one(RecentStrip).show([(e.id, self.session.thumbs.get(e.image_path)) for e in entries])

    @on(StripItem.Opened)
    def _open_recent(self, message: StripItem.Opened) -> None:
        self.app.open_history(message.entry_id)

    def load_request(self, request) -> None:
        """Fill the prompt, negative prompt and settings from ``request`` (from history)."""
        self.load_values(request.to_dict())

    def load_values(self, values: dict) -> None:
        """Fill the fields ``values`` names (an import may read only some); the others keep theirs."""
        if "prompt" in values:
            self.query_one("#prompt", PromptInput).value = values["prompt"]
        if "negative_prompt" in values:
            self.query_one("#negative", Input).value = values["negative_prompt"]
        panel = self.query_one(SettingsPanel)
        for key in ("steps", "width", "height", "scheduler", "count"):
            if key in values:
                panel.set_value(key, values[key])
        if "guidance" in values:
            panel.set_value("guidance", f"{values['guidance']:g}")
        if "seed" in values:
            panel.set_value("seed", "random" if values["seed"] is None else values["seed"])
        self.query_one("#prompt", PromptInput).focus()

    # --- generation ---------------------------------------------------------------------

    def insert_into_prompt(self, text: str) -> None:
        """Put ``text`` at the prompt's cursor, a space before it where a word would run into it."""
        prompt = self.query_one("#prompt", PromptInput)
        before = prompt.value[:prompt.cursor_position]
        prompt.insert_text_at_cursor((" " if before and not before.endswith(" ") else "") + text)
        prompt.focus()

    # Enter queues the text as it was when Enter came: keys typed after it may be in the field by now.
    @on(Input.Submitted, "#prompt")
    def _prompt_submitted(self, event: Input.Submitted) -> None:
        self.submit_prompt(typed={"prompt": event.value})

    @on(Input.Submitted, "#negative")
    def _negative_submitted(self, event: Input.Submitted) -> None:
        self.submit_prompt(typed={"negative_prompt": event.value})

    def submit_prompt(self, seed_override: int | None = None, typed: dict | None = None) -> bool:
        """Queue a job: a snapshot of the prompt and settings as they are now, ``typed`` (prompt
        or negative_prompt) in place of a field's text."""
        if not self._settings_valid():
            return False
        requests = self._made_or_said(lambda: self.session.expanded(self.current_request(seed_override, typed)))
        if requests is None:
            return False
        self.recall.remember((typed or {}).get("prompt", self.query_one("#prompt", PromptInput).value))
        if len(requests) > 1:
            self.log_line(f"wildcards: the template gives {len(requests)} prompts, one job each")
        return all([self.queue_request(one) for one in requests])

    def _settings_valid(self) -> bool:
        """Whether the settings panel holds no bad value; if it does, says which, and nothing is queued."""
        panel = self.query_one(SettingsPanel)
        if not panel.valid:
            field, message = next(iter(panel.problems.items()))
            self.app.notify(f"Fix {field} first: {message}", severity="error")
        return panel.valid

    def _made_or_said(self, make):
        """``make()``'s requests, or None once a bad field, template or grid has been said in one line."""
        from tui.client.grid import GridError  # the grid's module loads with the first job, not the first frame

        try:
            return make()
        except InvalidRequest as error:
            self.app.notify(str(error.problems[0]), severity="error")
        except (WildcardError, GridError) as error:
            self.app.notify(str(error), severity="error", timeout=8)
        return None

    def current_request(self, seed_override: int | None = None, typed: dict | None = None):
        """The prompt and settings as they are now, checked; raises InvalidRequest."""
        fields = {**self.query_one(SettingsPanel).settings.request_fields(),
                  "prompt": self.query_one("#prompt", PromptInput).value,
                  "negative_prompt": self.query_one("#negative", Input).value, **(typed or {})}
        if seed_override is not None:
            fields["seed"] = seed_override
        return validate_request(fields)

    def start_grid(self, axes_text: str) -> bool:
        """Queue an X/Y grid of the current prompt over ``axes_text`` ("steps=10,20; guidance=5,7");
        its contact sheet is made and shown once every cell's job has ended."""
        if not self._settings_valid():
            return False
        from tui.client.grid import grid_cells

        made = self._made_or_said(lambda: grid_cells(axes_text, self.current_request()))
        if made is None:
            return False
        axes, requests = made
        grid, problems = self.session.queue_grid(requests, axes)
        self.log_line(f"X/Y grid {grid.serial}: {' x '.join(a.describe() for a in axes)}, {len(requests)} jobs")
        if problems:
            self.app.notify(f"Not queued: {problems[0]}.", severity="error", timeout=8)
        return True

    @on(m.GridFinished)
    def _grid_finished(self, message: m.GridFinished) -> None:
        self._compose_grid(message.grid)

    @work(thread=True)
    def _compose_grid(self, grid) -> None:
        from tui.client.grid import GridError, grid_from_files

        try:
            path, size = grid_from_files(grid.cells, grid.requests, grid.axes)
        except (GridError, OSError) as error:
            self.app.call_from_thread(self.app.notify, f"X/Y grid {grid.serial}: not saved ({error})",
                                      severity="error", timeout=8)
            return
        self.app.call_from_thread(self._grid_saved, grid, path, size)

    def _grid_saved(self, grid, path, size: tuple[int, int]) -> None:
        self.log_line(f"X/Y grid {grid.serial} saved: {path}")
        first = grid.requests[0]
        sheet = HistoryEntry.for_request(first, "done", image_path=str(path), created_at=utc_now())
        sheet.prompt = f"X/Y grid: {' x '.join(a.describe() for a in grid.axes)} of {first.prompt}"
        sheet.width, sheet.height = size
        self.app.open_viewer(sheet)

    def queue_request(self, request, what: str = "") -> bool:
        """Send ``request`` to the server; the log says "job N queued" when it answers."""
        problem = self.session.queue(request, what)
        if problem:
            self.app.notify(f"Not queued: {problem}.", severity="error", timeout=8)
        return problem is None

    def action_cancel(self) -> None:
        cancelled = self.session.cancel()
        if cancelled == "job":
            self.log_line("cancelling the running job at the end of this step")
        elif cancelled == "load":
            self.log_line("cancelling the download; what arrived is kept, so choosing the model again resumes")
        elif time.monotonic() - self._idle_cancel_noted > 2:  # held or repeated Escape: one toast, not a pile
            self._idle_cancel_noted = time.monotonic()
            self.app.notify("Nothing is running.", timeout=2)

    async def action_toggle_settings(self) -> None:
        panel = self.query_one(SettingsPanel)
        panel.toggle_class("hidden")
        await panel.build()

    def action_clear_queue(self) -> None:
        problem = self.session.clear_queue()
        if problem:
            self.app.notify(f"Queue not cleared: {problem}.", severity="error", timeout=5)

    def action_reroll(self) -> None:
        self.submit_prompt(seed_override=random.randint(0, RANDOM_SEED_MAX))

    def current_seed(self) -> tuple[int | None, str]:
        """The seed of the image being made, else of the last one, and which it is."""
        if self._making is not None:
            return self._making.seed_for(self._making_index), "the image being made"
        return self.last_seed, "the last image's"

    def show_seed_lock(self) -> None:
        """The header says so while a seed is locked: at every width, the settings panel shown or not."""
        seed = self.settings.seed
        self.app.title = "sdtui" if seed == "random" else f"sdtui · seed {seed} locked"

    def action_toggle_seed_lock(self) -> None:
        panel = self.query_one(SettingsPanel)
        if panel.settings.seed == "random":
            seed, whose = self.current_seed()
            seed = seed if seed is not None else random.randint(0, RANDOM_SEED_MAX)
            panel.set_value("seed", seed)
            self.app.notify(f"Seed locked to {seed}" + (f" ({whose})." if whose else "."), timeout=2)
        else:
            panel.set_value("seed", "random")
            self.app.notify("Seed unlocked: each job draws a random seed.", timeout=2)

    def action_reuse_seed(self) -> None:
        seed, whose = self.current_seed()
        if seed is None:
            self.app.notify("No image yet, so no seed to reuse.", timeout=2)
            return
        self.query_one(SettingsPanel).set_value("seed", seed)
        self.app.notify(f"Seed locked to {seed} ({whose}).", timeout=2)

    def action_adjust(self, key: str, direction: int) -> None:
        panel = self.query_one(SettingsPanel)
        value = getattr(panel.settings, key) + direction * STEP_KEYS[key]
        low, high = (1, 500) if key == "steps" else (0.0, 50.0)
        value = min(high, max(low, value))
        panel.set_value(key, value if key == "steps" else f"{value:g}")
        if panel.has_class("hidden"):  # else the panel's field shows it
            edge = " (the most)" if value == high else " (the least)" if value == low else ""
            self.app.notify_in_place(key, f"{key.capitalize()} {value:g}{edge} for the next job.")

    # --- what the server says -------------------------------------------------------------

    @on(m.Connected)
    def _connected(self, message: m.Connected) -> None:
        state = message.state
        for notice in self.session.history_notices(state):
            self.log_line(notice, "warning")
            self.app.notify(notice, severity="warning", timeout=10)
        self.query_one(StatusPanel).set_queue(len(state.waiting))
        if state.model:  # a busy server gets to this client's own load only after its queue
            self.app.sub_title = f"{state.model} · {state.device} · {state.dtype}"
        elif state.loading:
            self.app.sub_title = "loading a model…"
        if not message.started:
            self.log_line(f"connected to the sdtui server (pid {state.pid})"
                          + (f", {state.model} loaded" if state.model else ""))
        if state.running is not None:
            waiting = len(state.waiting)
            self.log_line(f"the sdtui server is running job {state.running}"
                          + (f" with {plural(waiting, 'job')} waiting" if waiting else "") + "; its progress follows")

    @on(m.HistoryRepaired)
    def _history_repaired(self, message: m.HistoryRepaired) -> None:
        self.log_line(message.event.message, "warning")
        self.app.notify(message.event.message, severity="warning", timeout=10)
        self.refresh_recent()

    @on(m.ServerLost)
    def _server_lost(self, message: m.ServerLost) -> None:
        self._making = None
        self._finish_painting()
        status = self.query_one(StatusPanel)
        if status.state == "generating":
            status.job_ended("failed")
        status.set_queue(0)
        self.app.sub_title = "no sdtui server"
        reason = message.message.rstrip(".")
        said = reason[0].upper() + reason[1:] if reason.startswith("the sdtui server ") \
            else f"The sdtui server stopped: {reason}"
        logs = self.session.places.logs_dir  # sdtui.log: the server's log lines; server.log: its start, stop and crash
        self.log_line(f"{said}. Images already saved are in the history; sdtui.log and server.log in {logs} may "
                      "say why.", "error")

        def answered(yes: bool | None) -> None:
            if yes:
                self.app.action_restart_server()
            else:
                self.log_line("not restarting; the palette's \"server: restart\" starts it when you want")

        self.app.push_screen(ConfirmScreen(f"{said}. Start it again?"), answered)

    @on(m.Queued)
    def _queued(self, message: m.Queued) -> None:
        request = message.event.request
        seed = "random seed" if request.seed is None else f"seed {request.seed}"
        waiting = self.session.waiting
        self.log_line(f"job {message.job} queued{f' ({message.what})' if message.what else ''}: "
                      f"\"{clip(visible(request.prompt), 40)}\" {'x'.join(map(str, request.output_size))}, "
                      f"{plural(request.steps, 'step')}, {request.scheduler}, {seed}"
                      + (f" ({waiting} waiting)" if waiting > 1 else ""))

    @on(m.Refused)
    def _refused(self, message: m.Refused) -> None:
        self.app.notify(message.message, severity="error", timeout=8)

    @on(m.Step)
    def _step(self, message: m.Step) -> None:
        step = message.event
        self._making_index = step.image_index
        self.query_one(StatusPanel).offer(step)
        if step.preview is not None:
            self.query_one("#preview", Thumbnail).offer(step.preview)

    @on(m.Started)
    def _started(self, message: m.Started) -> None:
        started = message.event
        request = started.request
        self._making, self._making_index, self._running_job = request, 0, message.job
        self.query_one(StatusPanel).job_started(started.images, started.steps)
        self.query_one(Stage).fit_to(*request.output_size)
        self.set_caption(f"generating: {request.prompt}", f"seed {request.seed}")

    @on(m.Finished)
    def _finished(self, message: m.Finished) -> None:
        finished = message.event
        self._finish_painting()
        self.query_one("#preview", Thumbnail).show(finished.image)
        self._shown = finished.image
        self.set_caption(finished.request.prompt, settings_line(finished.seed, finished.request))

    @on(m.ImageSaved)
    def _image_saved(self, message: m.ImageSaved) -> None:
        saved, path = message.event, message.path
        self.last_seed, self.last_path = saved.seed, str(path)
        if message.image is not None:
            if message.image is not self._shown:  # this client came in after the image was made
                self._finish_painting()
                self.query_one("#preview", Thumbnail).show(message.image)
                self.set_caption(saved.request.prompt, settings_line(saved.seed, saved.request))
            self.session.thumbs.put(path, message.image)
        self._shown = None
        self.refresh_recent()
        self._tell_history_screens()

    @on(m.SaveFailed)
    def _save_failed(self, message: m.SaveFailed) -> None:
        self.app.notify(message.event.message, severity="error", timeout=8)

    @on(m.QueueChanged)
    def _queue_changed(self, message: m.QueueChanged) -> None:
        self.query_one(StatusPanel).set_queue(message.event.waiting)

    @on(m.QueueCleared)
    def _queue_cleared(self, message: m.QueueCleared) -> None:
        self.log_line(f"queue cleared: {plural(message.count, 'waiting job')} dropped")

    @on(m.Notice)
    def _notice(self, message: m.Notice) -> None:
        notice = message.event
        if "swap" in notice.message:
            self.query_one(StatusPanel).swap_warning(notice.message)
        if notice.level == "error":
            self.app.notify(notice.message, severity="error", timeout=30)

    @on(m.ServiceCrashed)
    def _service_crashed(self, message: m.ServiceCrashed) -> None:
        said = (f"The server's generation thread stopped ({message.event.message}); run `sdtui stop`, then start "
                "sdtui again.")
        self.log_line(said, "error")
        self.app.notify(said, severity="error", timeout=30)

    @on(m.ClientsChanged)
    def _clients_changed(self, message: m.ClientsChanged) -> None:
        change, apps = message.event, message.event.clients.count("app")
        if change.came == "app":
            self.log_line(f"another sdtui app connected to this server ({apps} now): jobs from each share one queue")
        elif change.left == "app":
            self.log_line("another sdtui app left this server" + (f" ({apps} still connected)" if apps > 1 else ""))

    @on(m.Cancelled)
    def _cancelled(self, message: m.Cancelled) -> None:
        completed = message.event.completed
        self._job_stopped("cancelled", f"{plural(completed, 'image')} saved" if completed else "")
        self.query_one(StatusPanel).job_ended("cancelled")

    @on(m.Failed)
    def _failed(self, message: m.Failed) -> None:
        self._job_stopped("failed", "the log says why")
        self.query_one(StatusPanel).job_ended("failed")
        self.app.notify(in_app_wording(message.event.message), severity="error", timeout=8)

    def _job_stopped(self, how: str, detail: str) -> None:
        """The caption stops saying "generating" once the job it names has ended without its image."""
        making, self._making = self._making, None
        self._finish_painting()
        if making is not None:
            self.set_caption(f"{how}: {making.prompt}", detail)

    @on(m.JobDone)
    def _job_done(self, message: m.JobDone) -> None:
        if message.job == self._running_job:  # a waiting job's end (dropped, say) leaves the running one be
            self._making = None
            status = self.query_one(StatusPanel)
            if status.state == "generating":
                status.job_ended("done")
        self._images_this_run += message.event.images
        self._tell_history_screens(progress="" if self.session.waiting == 0 else None)
        if self.session.waiting == 0:
            self.app.terminal.queue_done(self._images_this_run)
            self._images_this_run = 0

    @on(m.LoadStarted)
    def _load_started(self, message: m.LoadStarted) -> None:
        model = message.event.model
        self.app.sub_title = f"loading {model}…"
        if self.query_one("#preview", Thumbnail).image is None:
            self.set_caption(f"loading {model}…", "")

    @on(m.DownloadProgress)
    def _download_progress(self, message: m.DownloadProgress) -> None:
        report = message.event
        self.set_caption(f"downloading {report.model}", self.query_one(StatusPanel).download(report))

    @on(m.Unloaded)
    def _unloaded(self, message: m.Unloaded) -> None:
        if message.event.memory is not None:
            self.query_one(StatusPanel).show_memory(message.event.memory)  # the engine logs the figures
        self.app.sub_title = f"{message.event.model} unloaded; it loads again with the next job"

    @on(m.Loaded)
    def _loaded(self, message: m.Loaded) -> None:
        report = message.event
        status = self.query_one(StatusPanel)
        status.download_ended()
        if report.memory is not None:
            status.show_memory(report.memory)
        self.app.sub_title = f"{report.model} · {report.device} · {report.dtype}"
        if self.query_one("#preview", Thumbnail).image is None:  # else the caption keeps describing the picture
            self.set_caption(f"ready: {report.model} [{report.family}]", "type a prompt and press Enter")
        if message.defaults:
            self._defaults_applied(report.family_info, message.defaults)

    @on(m.LoadFailed)
    def _load_failed(self, message: m.LoadFailed) -> None:
        failed = message.event
        self.query_one(StatusPanel).download_ended()
        if failed.kept is not None:
            self._show_settings({"model": failed.kept})
            self.app.sub_title = f"{self.session.model} · {self.session.device} · {self.session.dtype}"
            self.set_caption(f"still using {failed.kept}", "the model you picked could not load")
            self.app.notify(f"{in_app_wording(failed.message)}. Still using {failed.kept}.", severity="error",
                            timeout=15)
            return
        self.app.sub_title = "no model loaded"
        self.set_caption("no model loaded", "pick a model (F3) or use the demo model")
        said = in_app_wording(failed.message).rstrip(".")
        advice = "" if DEMO_COMMAND in said else f". Pick another model with F3, or use {DEMO_COMMAND}"  # said once
        self.app.notify(f"{said}{advice}.", severity="error", timeout=15)

    def _progress_text(self, report) -> str:
        """One line of where the running job is, for screens over this one."""
        job = self.session.running
        images = self._making.count if self._making is not None else 1
        text = f"generating{f' job {job}' if job is not None else ''}: step {report.step}/{report.total}"
        if images > 1:
            text += f", image {report.image_index + 1} of {images}"
        if self.session.waiting:
            text += f" · {self.session.waiting} waiting"
        return text

    def _tell_history_screens(self, progress: str | None = None, rows: bool = True) -> None:
        """The history screen, when open, shows new rows and the running job's progress as they come."""
        from tui.client.screens.history import HistoryScreen

        for screen in self.app.screen_stack:
            if isinstance(screen, HistoryScreen):
                if rows:
                    screen.history_changed()
                if progress is not None:
                    screen.show_progress(progress)

    def _finish_painting(self) -> None:
        """A job ended: its last progress shows now, and a preview still waiting is dropped."""
        self.query_one("#preview", Thumbnail).drop_offers()
        self.query_one(StatusPanel).flush()

    @on(StatusPanel.Progressed)
    def _progressed(self, message: StatusPanel.Progressed) -> None:
        self._tell_history_screens(progress=self._progress_text(message.report), rows=False)

    def set_caption(self, title: str, detail: str) -> None:
        """``title`` (a prompt, say) in bold, then ``detail``; a long title is cut, never the detail."""
        title, detail = visible(title), visible(detail)
        room = self.query_one("#caption", Line).content_size.width - cell_len(detail) - 2
        if detail and room >= 12 and cell_len(title) > room:
            title = set_cell_size(title, room - 1) + "…"
        text = Text(title, style="bold")
        if detail:
            text.append("  " + detail, style="dim")
        text.no_wrap, text.overflow = True, "ellipsis"
        self.query_one("#caption", Line).set(text)

    @on(m.LogLine)
    def _log_line(self, message: m.LogLine) -> None:
        self.query_one(LogPanel).add(message.text, message.level, message.created)

    def log_line(self, text: str, level: str = "info") -> None:
        self.query_one(LogPanel).add(text, level)

    # --- settings -----------------------------------------------------------------------

    @on(SettingsPanel.Changed)
    def _setting_changed(self, message: SettingsPanel.Changed) -> None:
        if message.key == "seed_lock":
            if message.value and self.settings.seed == "random":
                self.action_toggle_seed_lock()
            elif not message.value and self.settings.seed != "random":
                self.action_toggle_seed_lock()
            return
        self.settings_changed(self.query_one(SettingsPanel).settings, message.key, message.reload)

    @on(Input.Changed, "#negative")
    def _negative_changed(self, event: Input.Changed) -> None:
        panel = self.query_one(SettingsPanel)
        panel.settings = replace(panel.settings, negative_prompt=event.value)
        self.settings_changed(panel.settings, "negative_prompt", False)

    def settings_changed(self, settings, key: str, reload: bool) -> None:
        """The Session keeps and saves the settings (and loads the model again when ``reload``);
        this says what came of it."""
        change = self.session.change_settings(settings, key, reload)
        if change.not_saved:
            self.app.notify(change.not_saved, severity="warning")
        if key == "seed":
            self.show_seed_lock()
        if change.already_loaded:
            self.log_line(f"{settings.model} is already loaded; nothing to do")
        elif change.ahead:
            what = settings.model if key == "model" else f"the model with {key} {getattr(settings, key)}"
            self.log_line(f"loading {what} after {plural(change.ahead, 'job')} ahead of it")
            self.app.sub_title = f"{self.app.sub_title.split(' · waiting')[0]} · waiting: {what} loads after " \
                                 f"{plural(change.ahead, 'job')}"
        if change.not_loaded:
            self.app.notify(f"Not loaded: {change.not_loaded}.", severity="error", timeout=8)

    def _show_settings(self, values: dict) -> None:
        """The panel shows values the Session has already taken (a family's defaults, the model kept)."""
        panel = self.query_one(SettingsPanel)
        for key, value in values.items():
            panel.set_value(key, f"{value:g}" if isinstance(value, float) else value, announce=False)

    def _defaults_applied(self, family, changes: dict) -> None:
        self._show_settings(changes)
        summary = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in changes.items())
        self.log_line(f"{family.label} defaults applied: {summary} (change them in settings; "
                      "family_defaults = false in config.toml turns this off)")
        self.app.notify(f"{family.label}: {summary}", timeout=5)
