"""The job view: the caption, the picture beside the recent images and the log, and the
progress lines below: what the server does, as it does it.

The main screen hands it the Session's messages first (MainScreen.take). It shows what is its
own (a job's steps and picture, a load, the log's lines and the toasts that go with them), and
every message goes on up to the screen, which keeps the header, the dialogs and the settings.
"""

from __future__ import annotations

from rich.cells import cell_len, set_cell_size
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical

from tui.client import messages as m
from tui.client.widgets.details import settings_line
from tui.client.widgets.log import LogPanel
from tui.client.widgets.stage import Stage
from tui.client.widgets.status import Line, StatusPanel
from tui.client.widgets.strip import STRIP_SIZE, RecentStrip
from tui.client.widgets.thumbnail import Thumbnail
from tui.client.wording import DEMO_COMMAND, in_app_wording
from tui.text import clip, plural, visible

# What the picture and the progress lines may send to the terminal while a job runs: an
# SSH link should carry well under 100 KB/s at 200x60 with previews on.
PREVIEW_BYTES_PER_S = 24 * 1024


class JobView(Vertical):
    def __init__(self, session, **kwargs) -> None:
        """``session``: the Session, for its history, thumbnails and the queue's length."""
        super().__init__(**kwargs)
        self.session = session
        self._making = None  # the request whose caption says it is being made
        self._running_job: int | None = None  # the job whose progress the status lines show
        self._shown = None  # the finished image on the stage, until it is saved

    def compose(self) -> ComposeResult:
        yield Line(id="caption", wrap=False)
        with Stage(id="stage"):
            yield Thumbnail(id="preview", preview_bytes_per_s=PREVIEW_BYTES_PER_S)
            with Vertical(id="side"):
                yield RecentStrip(id="recent")
                yield LogPanel(id="log")
        yield StatusPanel(id="status")

    def on_mount(self) -> None:
        settings = self.session.settings
        self.query_one(Stage).fit_to(settings.width, settings.height)
        self.refresh_recent()
        self._say_colours(self.app.console.color_system)
        self.call_after_refresh(self._show_latest)

    def _show_latest(self) -> None:
        """The last image from history on the stage at start, until a job paints over it."""
        entry, image = self.session.latest_image()
        if image is None:
            return
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
        entries = self.session.history.query(status="done", limit=STRIP_SIZE)
        self.query_one(RecentStrip).show([(e.id, self.session.thumbs.get(e.image_path)) for e in entries])

    def log_line(self, text: str, level: str = "info") -> None:
        self.query_one(LogPanel).add(text, level)

    def set_caption(self, title: str, detail: str) -> None:
        """``title`` (a prompt, say) in bold, then ``detail``; a long title is cut, never the detail."""
        title, detail = visible(title), visible(detail)
        caption = self.query_one("#caption", Line)
        room = caption.content_size.width - cell_len(detail) - 2
        if detail and room >= 12 and cell_len(title) > room:
            title = set_cell_size(title, room - 1) + "…"
        text = Text(title, style="bold")
        if detail:
            text.append("  " + detail, style="dim")
        text.no_wrap, text.overflow = True, "ellipsis"
        caption.set(text)

    def _say(self, text: str, level: str = "info", toast: float | None = None) -> None:
        """A line in the log and, given ``toast`` (its seconds), the same as a toast."""
        self.log_line(text, level)
        if toast is not None:
            self.app.notify(text, severity=level if level != "info" else "information", timeout=toast)

    # --- the connection and the queue -----------------------------------------------------

    @on(m.LogLine)
    def _log_line(self, message: m.LogLine) -> None:
        self.query_one(LogPanel).add(message.text, message.level, message.created)

    @on(m.Connected)
    def _connected(self, message: m.Connected) -> None:
        state = message.state
        for notice in self.session.history_notices(state):
            self._say(notice, "warning", toast=10)
        self.query_one(StatusPanel).set_queue(len(state.waiting))
        if not message.started:
            self.log_line(f"connected to the sdtui server (pid {state.pid})"
                          + (f", {state.model} loaded" if state.model else ""))
        if state.running is not None:
            waiting = len(state.waiting)
            self.log_line(f"the sdtui server is running job {state.running}"
                          + (f" with {plural(waiting, 'job')} waiting" if waiting else "") + "; its progress follows")

    @on(m.ServerLost)
    def _server_lost(self, message: m.ServerLost) -> None:
        self._making = None
        self._finish_painting()
        status = self.query_one(StatusPanel)
        if status.state == "generating":
            status.job_ended("failed")
        status.set_queue(0)

    @on(m.HistoryRepaired)
    def _history_repaired(self, message: m.HistoryRepaired) -> None:
        self._say(message.event.message, "warning", toast=10)
        self.refresh_recent()

    @on(m.Queued)
    def _queued(self, message: m.Queued) -> None:
        request = message.event.request
        seed = "random seed" if request.seed is None else f"seed {request.seed}"
        waiting = self.session.waiting
        self.log_line(f"job {message.job} queued{f' ({message.what})' if message.what else ''}: "
                      f"\"{clip(visible(request.prompt), 40)}\" {'x'.join(map(str, request.output_size))}, "
                      f"{plural(request.steps, 'step')}, {request.scheduler}, {seed}"
                      + (f" ({waiting} waiting)" if waiting > 1 else ""))

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
        self._say(f"The server's generation thread stopped ({message.event.message}); run `sdtui stop`, then "
                  "start sdtui again.", "error", toast=30)

    @on(m.ClientsChanged)
    def _clients_changed(self, message: m.ClientsChanged) -> None:
        change, apps = message.event, message.event.clients.count("app")
        if change.came == "app":
            self.log_line(f"another sdtui app connected to this server ({apps} now): jobs from each share one queue")
        elif change.left == "app":
            self.log_line("another sdtui app left this server" + (f" ({apps} still connected)" if apps > 1 else ""))

    # --- a job ------------------------------------------------------------------------------

    @on(m.Refused)
    def _refused(self, message: m.Refused) -> None:
        self.app.notify(message.message, severity="error", timeout=8)

    @on(m.Started)
    def _started(self, message: m.Started) -> None:
        started = message.event
        request = started.request
        self._making, self._running_job = request, message.job
        self.query_one(StatusPanel).job_started(started.images, started.steps)
        self.query_one(Stage).fit_to(*request.output_size)
        self.set_caption(f"generating: {request.prompt}", f"seed {request.seed}")

    @on(m.Step)
    def _step(self, message: m.Step) -> None:
        step = message.event
        self.query_one(StatusPanel).offer(step)
        if step.preview is not None:
            self.query_one("#preview", Thumbnail).offer(step.preview)

    @on(m.Finished)
    def _finished(self, message: m.Finished) -> None:
        finished = message.event
        self._finish_painting()
        self.query_one("#preview", Thumbnail).show(finished.image)
        self._shown = finished.image
        self.set_caption(finished.request.prompt, settings_line(finished.seed, finished.request))

    @on(m.ImageSaved)
    def _image_saved(self, message: m.ImageSaved) -> None:
        saved = message.event
        if message.image is not None:
            if message.image is not self._shown:  # this client came in after the image was made
                self._finish_painting()
                self.query_one("#preview", Thumbnail).show(message.image)
                self.set_caption(saved.request.prompt, settings_line(saved.seed, saved.request))
            self.session.thumbs.put(message.path, message.image)
        self._shown = None
        self.refresh_recent()

    @on(m.SaveFailed)
    def _save_failed(self, message: m.SaveFailed) -> None:
        self.app.notify(message.event.message, severity="error", timeout=8)

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

    def _finish_painting(self) -> None:
        """A job ended: its last progress shows now, and a preview still waiting is dropped."""
        self.query_one("#preview", Thumbnail).drop_offers()
        self.query_one(StatusPanel).flush()

    # --- a model ----------------------------------------------------------------------------

    @on(m.LoadStarted)
    def _load_started(self, message: m.LoadStarted) -> None:
        if self.query_one("#preview", Thumbnail).image is None:
            self.set_caption(f"loading {message.event.model}…", "")

    @on(m.DownloadProgress)
    def _download_progress(self, message: m.DownloadProgress) -> None:
        report = message.event
        self.set_caption(f"downloading {report.model}", self.query_one(StatusPanel).download(report))

    @on(m.Unloaded)
    def _unloaded(self, message: m.Unloaded) -> None:
        if message.event.memory is not None:
            self.query_one(StatusPanel).show_memory(message.event.memory)  # the engine logs the figures

    @on(m.Loaded)
    def _loaded(self, message: m.Loaded) -> None:
        report = message.event
        status = self.query_one(StatusPanel)
        status.download_ended()
        if report.memory is not None:
            status.show_memory(report.memory)
        if self.query_one("#preview", Thumbnail).image is None:  # else the caption keeps describing the picture
            self.set_caption(f"ready: {report.model} [{report.family}]", "type a prompt and press Enter")
        if message.defaults:
            family, changes = report.family_info, message.defaults
            summary = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in changes.items())
            self.log_line(f"{family.label} defaults applied: {summary} (change them in settings; "
                          "family_defaults = false in config.toml turns this off)")
            self.app.notify(f"{family.label}: {summary}", timeout=5)
        for note in message.notes:
            self.log_line(note)

    @on(m.LoadFailed)
    def _load_failed(self, message: m.LoadFailed) -> None:
        failed = message.event
        self.query_one(StatusPanel).download_ended()
        if failed.kept is not None:
            self.set_caption(f"still using {failed.kept}", "the model you picked could not load")
            self.app.notify(f"{in_app_wording(failed.message)}. Still using {failed.kept}.", severity="error",
                            timeout=15)
            return
        self.set_caption("no model loaded", "pick a model (F3) or use the demo model")
        said = in_app_wording(failed.message).rstrip(".")
        advice = "" if DEMO_COMMAND in said else f". Pick another model with F3, or use {DEMO_COMMAND}"  # said once
        self.app.notify(f"{said}{advice}.", severity="error", timeout=15)
