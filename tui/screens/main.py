"""The main screen: prompt, settings, live preview, progress and memory, and the log.

Reports from the generation thread arrive as messages; the handlers here own every
change to the widgets.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace

from rich.cells import cell_len, set_cell_size
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Input

from tui.engine.events import (Cancelled, DownloadProgress, Failed, Finished, Loaded, LoadStarted, Notice, Started,
                               Step, Unloaded)
from tui.cli_progress import format_duration
from tui.engine.memory import format_bytes
from tui.engine.request import RANDOM_SEED_MAX, InvalidRequest, validate_request
from tui.generation import ImageSaved, JobDone, LoadFailed, QueueChanged, SaveFailed
from tui.messages import EngineReport, LogLine
from tui.text import clip, visible
from tui.wording import DEMO_COMMAND, in_app_wording
from tui.widgets.details import settings_line
from tui.widgets.log import LogPanel
from tui.widgets.prompt import PromptInput, PromptRecall
from tui.widgets.safe_input import SafeInput
from tui.widgets.settings import SettingsPanel
from tui.widgets.stage import Stage
from tui.widgets.status import Line, StatusPanel
from tui.widgets.strip import RecentStrip, StripItem
from tui.widgets.thumbnail import ByteBudget, Thumbnail

STEP_KEYS = {"steps": 1, "guidance": 0.5}
# What the picture and the progress lines may send to the terminal while a job runs: an
# SSH link should carry well under 100 KB/s at 200x60 with previews on.
PREVIEW_BYTES_PER_S = 24 * 1024
STATUS_INTERVAL_S = 0.25
SETTINGS_MIN_WIDTH = 120  # columns; narrower terminals start with the settings panel hidden


class MainScreen(Screen):
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

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.last_seed: int | None = None
        self.last_path: str | None = None
        self.recall = PromptRecall()
        self._download_start: tuple[float, int] | None = None
        self._preview_budget = ByteBudget(PREVIEW_BYTES_PER_S)
        self._pending_preview = None
        self._preview_timer = None
        self._pending_step: Step | None = None
        self._status_due = 0.0
        self._status_timer = None
        self._idle_cancel_noted = float("-inf")
        self._making = None  # the request of the running job, its seed resolved
        self._making_index = 0  # the image of that job now on its way

    @property
    def settings(self):
        return self.query_one(SettingsPanel).settings

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body"):
            yield SettingsPanel(self.app.settings, id="settings")
            with Vertical(id="work"):
                yield PromptInput(self.recall, placeholder="prompt (Enter to generate, Up/Down for earlier prompts)",
                                  id="prompt", compact=True)
                yield SafeInput(self.app.settings.negative_prompt, placeholder="negative prompt", id="negative",
                            compact=True)
                yield Line(id="caption", wrap=False)
                with Stage(id="stage"):
                    yield Thumbnail(id="preview")
                    with Vertical(id="side"):
                        yield RecentStrip(id="recent")
                        yield LogPanel(id="log")
                yield StatusPanel(id="status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#prompt", PromptInput).focus()
        if self.app.size.width < SETTINGS_MIN_WIDTH:  # the picture first; F4 shows the settings
            self.query_one(SettingsPanel).add_class("hidden")
        settings = self.app.settings
        self.query_one(Stage).fit_to(settings.width, settings.height)
        self.refresh_recent()
        self._say_colours(self.app.console.color_system)
        self.call_after_refresh(self._show_latest)

    def _show_latest(self) -> None:
        """The last image from history on the stage at start, until a job paints over it."""
        entry = self.app.history.latest_done()
        if entry is None or self.last_path is not None:
            return
        image = self.app.load_image(entry.image_path)
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
        from tui.widgets.strip import STRIP_SIZE

        entries = self.app.history.query(status="done", limit=STRIP_SIZE)
        self.query_one(RecentStrip).show([(e.id, self.app.thumbs.get(e.image_path)) for e in entries])

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

    @on(Input.Submitted, "#prompt")
    def _prompt_submitted(self, event: Input.Submitted) -> None:
        self.generate()

    @on(Input.Submitted, "#negative")
    def _negative_submitted(self, event: Input.Submitted) -> None:
        self.generate()

    def generate(self, seed_override: int | None = None) -> bool:
        """Queue a job: a snapshot of the prompt and settings as they are now."""
        panel = self.query_one(SettingsPanel)
        if not panel.valid:
            field, message = next(iter(panel.problems.items()))
            self.app.notify(f"Fix {field} first: {message}", severity="error")
            return False
        prompt = self.query_one("#prompt", PromptInput).value
        negative = self.query_one("#negative", Input).value
        fields = {**panel.settings.request_fields(), "negative_prompt": negative}
        if seed_override is not None:
            fields["seed"] = seed_override
        try:
            request = validate_request({"prompt": prompt, **fields})
        except InvalidRequest as error:
            self.app.notify(str(error.problems[0]), severity="error")
            return False
        self.recall.remember(prompt)
        self.queue_request(request)
        return True

    def queue_request(self, request, what: str = "") -> int:
        """Queue ``request`` and say so in the log, with the start of its prompt; returns the job number."""
        number = self.app.service.submit(request)
        waiting = self.app.service.waiting()
        seed = "random seed" if request.seed is None else f"seed {request.seed}"
        prompt = clip(visible(request.prompt), 40)
        self.log_line(f"job {number} queued{f' ({what})' if what else ''}: \"{prompt}\" {request.width}x"
                      f"{request.height}, {request.steps} steps, {request.scheduler}, {seed}"
                      + (f" ({waiting} waiting)" if waiting > 1 else ""))
        return number

    def action_cancel(self) -> None:
        cancelled = self.app.service.cancel_current()
        if cancelled == "job":
            self.log_line("cancelling the running job at the end of this step")
        elif cancelled == "load":
            self.log_line("cancelling the download; what arrived is kept, so choosing the model again resumes")
        elif time.monotonic() - self._idle_cancel_noted > 2:  # held or repeated Escape: one toast, not a pile
            self._idle_cancel_noted = time.monotonic()
            self.app.notify("Nothing is running.", timeout=2)

    def action_toggle_settings(self) -> None:
        self.query_one(SettingsPanel).toggle_class("hidden")

    def action_clear_queue(self) -> None:
        dropped = self.app.service.clear_queue()
        self.log_line(f"queue cleared: {dropped} waiting job(s) dropped")

    def action_reroll(self) -> None:
        self.generate(seed_override=random.randint(0, RANDOM_SEED_MAX))

    def current_seed(self) -> tuple[int | None, str]:
        """The seed of the image being made, else of the last one, and which it is."""
        if self._making is not None:
            return self._making.seed_for(self._making_index), "the image being made"
        return self.last_seed, "the last image's"

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

    # --- reports from the generation thread -------------------------------------------

    @on(EngineReport)
    def _report(self, message: EngineReport) -> None:
        report = message.report
        status = self.query_one(StatusPanel)
        preview = self.query_one("#preview", Thumbnail)
        if isinstance(report, Step):
            self._making_index = report.image_index
            self._queue_status(report)
            if report.preview is not None:
                self._offer_preview(report.preview)
        elif isinstance(report, Started):
            request = report.request
            self._making, self._making_index = request, 0
            status.job_started(report.images, report.steps)
            self.query_one(Stage).fit_to(request.width, request.height)
            self.set_caption(f"generating: {request.prompt}", f"seed {request.seed}")
        elif isinstance(report, ImageSaved):
            finished: Finished = report.finished
            self.last_seed, self.last_path = finished.seed, str(report.path)
            preview.show(finished.image)
            request = finished.request
            self.set_caption(request.prompt, settings_line(finished.seed, request))
            self.app.image_finished(report)
            self.app.thumbs.put(report.path, finished.image)
            self.refresh_recent()
        elif isinstance(report, Finished):
            self._finish_painting()
            preview.show(report.image)
        elif isinstance(report, QueueChanged):
            status.set_queue(report.waiting)
        elif isinstance(report, Notice):
            if "swap" in report.message:
                status.swap_warning(report.message)
        elif isinstance(report, Cancelled):
            self._making = None
            self._finish_painting()
            status.job_ended("cancelled")
        elif isinstance(report, Failed):
            self._making = None
            self._finish_painting()
            status.job_ended("failed")
            self.app.notify(in_app_wording(report.message), severity="error", timeout=8)
        elif isinstance(report, SaveFailed):
            self.app.notify(report.message, severity="error", timeout=8)
        elif isinstance(report, JobDone):
            self._making = None
            if status.state == "generating":
                status.job_ended("done")
        elif isinstance(report, LoadStarted):
            self.app.sub_title = f"loading {report.model}…"
            if preview.image is None:
                self.set_caption(f"loading {report.model}…", "")
        elif isinstance(report, DownloadProgress):
            detail = self._download_text(report)
            self.set_caption(f"downloading {report.model}", detail)
            status.download(report.done_bytes, report.total_bytes, detail)
        elif isinstance(report, Unloaded):
            status.show_memory(report.memory)  # the engine logs the figures
        elif isinstance(report, Loaded):
            self._download_start = None
            status.download_ended()
            if report.memory is not None:
                status.show_memory(report.memory)
            self.app.sub_title = f"{report.model} · {report.device} · {report.dtype}"
            if preview.image is None:  # else the caption keeps describing the picture; the header names the model
                self.set_caption(f"ready: {report.model} [{report.family}]", "type a prompt and press Enter")
            self.app.model_loaded(report)
        elif isinstance(report, LoadFailed):
            self._download_start = None
            status.download_ended()
            if report.kept is not None:
                self.app.model_kept(report.kept)
                self.set_caption(f"still using {report.kept}", "the model you picked could not load")
                self.app.notify(f"{in_app_wording(report.message)}. Still using {report.kept}.", severity="error",
                                timeout=15)
                return
            self.app.sub_title = "no model loaded"
            self.set_caption("no model loaded", "pick a model (F3) or use the demo model")
            self.app.notify(f"{in_app_wording(report.message)}. Pick another model with F3, or use "
                            f"{DEMO_COMMAND}.", severity="error", timeout=15)

    def _queue_status(self, report: Step) -> None:
        """Progress lines repaint at most every STATUS_INTERVAL_S; the last step at once."""
        now = time.monotonic()
        self._pending_step = report
        if report.step == report.total or now >= self._status_due:
            self._flush_status()
        elif self._status_timer is None:
            self._status_timer = self.set_timer(self._status_due - now, self._flush_status)

    def _flush_status(self) -> None:
        if self._status_timer is not None:
            self._status_timer.stop()
            self._status_timer = None
        report, self._pending_step = self._pending_step, None
        if report is None:
            return
        self.query_one(StatusPanel).step(report.step, report.total, report.image_index, report.step_seconds,
                                         report.elapsed, report.it_per_s, report.memory)
        self._status_due = time.monotonic() + STATUS_INTERVAL_S

    def _offer_preview(self, image) -> None:
        """Show a preview now if the byte budget allows, else keep the newest for later."""
        preview = self.query_one("#preview", Thumbnail)
        now = time.monotonic()
        wait = self._preview_budget.wait_for(preview.frame_bytes, now)
        if wait <= 0:
            self._pending_preview = None
            preview.show(image, upscale=False)
            self._preview_budget.spend(preview.frame_bytes, now)
            return
        self._pending_preview = image
        if self._preview_timer is None:
            self._preview_timer = self.set_timer(wait, self._flush_preview)

    def _flush_preview(self) -> None:
        self._preview_timer = None
        image, self._pending_preview = self._pending_preview, None
        if image is not None:
            self._offer_preview(image)

    def _finish_painting(self) -> None:
        """A job ended: its last progress shows now, and a preview still waiting is dropped."""
        self._pending_preview = None
        if self._preview_timer is not None:
            self._preview_timer.stop()
            self._preview_timer = None
        self._flush_status()

    def _download_text(self, report: DownloadProgress) -> str:
        now = time.monotonic()
        if self._download_start is None:
            self._download_start = (now, report.done_bytes)
        began, first_bytes = self._download_start
        rate = (report.done_bytes - first_bytes) / (now - began) if now > began else 0.0
        total = format_bytes(report.total_bytes) if report.total_bytes else "?"
        text = f"{format_bytes(report.done_bytes)} of {total} at {format_bytes(int(rate))}/s"
        if rate > 0 and report.total_bytes:
            text += f", {format_duration((report.total_bytes - report.done_bytes) / rate)} left"
        return text

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

    @on(LogLine)
    def _log_line(self, message: LogLine) -> None:
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
        self.app.settings_changed(self.query_one(SettingsPanel).settings, message.key, message.reload)

    @on(Input.Changed, "#negative")
    def _negative_changed(self, event: Input.Changed) -> None:
        panel = self.query_one(SettingsPanel)
        panel.settings = replace(panel.settings, negative_prompt=event.value)
        self.app.settings_changed(panel.settings, "negative_prompt", False)
