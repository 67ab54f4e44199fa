"""The main screen: the prompt and negative prompt, the settings panel, and the job view (the
picture, the log and the progress lines) under the header.

What the server says arrives as the Session's messages, one class per event, at the job view
first (``take``), which shows the job and the log; each then comes up to this screen, which
keeps the header, the dialogs and the other screens up to date.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Header, Input

from tui.client import messages as m
from tui.client.screens.confirm import ConfirmScreen
from tui.client.widgets.footer import FittingFooter
from tui.client.widgets.job_view import JobView
from tui.client.widgets.prompt import PromptInput, PromptRecall
from tui.client.widgets.safe_input import SafeInput
from tui.client.widgets.settings import SettingsPanel
from tui.client.widgets.status import StatusPanel
from tui.client.widgets.strip import StripItem
from tui.engine.request import RANDOM_SEED_MAX, InvalidRequest, validate_request
from tui.text import plural
from tui.wildcards import WildcardError

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
        self.recall = PromptRecall()
        self.job_view = JobView(session, id="job")
        self._images_this_run = 0  # saved since the queue last emptied
        self._idle_cancel_noted = float("-inf")

    def take(self, message) -> None:
        """Where the Session's messages and the log's lines go (from any thread): the job view first."""
        self.job_view.post_message(message)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body"):
            # Narrower terminals show the picture first (F4 shows the settings): hidden from the
            # start, not restyled hidden after the first frame.
            narrow = self.app.size.width < SETTINGS_MIN_WIDTH
            yield SettingsPanel(self.session, id="settings", classes="hidden" if narrow else "")
            with Vertical(id="work"):
                yield PromptInput(self.recall, placeholder="prompt (Enter to generate, Up/Down for earlier prompts)",
                                  id="prompt", compact=True)
                yield SafeInput(self.session.settings.negative_prompt, placeholder="negative prompt", id="negative",
                                compact=True)
                yield self.job_view
        yield FittingFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one("#prompt", PromptInput).focus()
        self.recall.prompts.extend(self.session.history.recent_prompts())
        self.show_seed_lock()

    @on(StripItem.Opened)
    def _open_recent(self, message: StripItem.Opened) -> None:
        self.app.open_history(message.entry_id)

    def log_line(self, text: str, level: str = "info") -> None:
        self.job_view.log_line(text, level)

    # --- the fields -------------------------------------------------------------------------

    def fill(self, values: dict) -> None:
        """Fill the fields ``values`` names (a request from history; an import may read only some);
        the others keep theirs."""
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

    def insert_into_prompt(self, text: str) -> None:
        """Put ``text`` at the prompt's cursor, a space before it where a word would run into it."""
        prompt = self.query_one("#prompt", PromptInput)
        before = prompt.value[:prompt.cursor_position]
        prompt.insert_text_at_cursor((" " if before and not before.endswith(" ") else "") + text)
        prompt.focus()

    def change_setting(self, key: str, value: object) -> None:
        """Change a setting as if typed into its field (the panel checks it and hands it to the Session)."""
        self.query_one(SettingsPanel).set_value(key, value)

    # --- queueing ---------------------------------------------------------------------------

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
        requests = self.checked(lambda: self.session.expanded(self.current_request(seed_override, typed)))
        if requests is None:
            return False
        self.recall.remember((typed or {}).get("prompt", self.query_one("#prompt", PromptInput).value))
        if len(requests) > 1:
            self.log_line(f"wildcards: the template gives {len(requests)} prompts, one job each")
        return all([self._queue(one) for one in requests])

    def _queue(self, request) -> bool:
        """Send ``request`` to the server; the log says "job N queued" when it answers."""
        problem = self.session.queue(request)
        if problem:
            self.app.notify(f"Not queued: {problem}.", severity="error", timeout=8)
        return problem is None

    def checked(self, make):
        """``make()``'s requests, or None once a bad value in the settings panel, a bad field,
        template or grid has been said in one line (then nothing is to be queued)."""
        panel = self.query_one(SettingsPanel)
        if not panel.valid:
            field, message = next(iter(panel.problems.items()))
            self.app.notify(f"Fix {field} first: {message}", severity="error")
            return None
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
        fields = {**self.session.settings.request_fields(),
                  "prompt": self.query_one("#prompt", PromptInput).value,
                  "negative_prompt": self.query_one("#negative", Input).value, **(typed or {})}
        if seed_override is not None:
            fields["seed"] = seed_override
        return validate_request(fields)

    # --- keys -------------------------------------------------------------------------------

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

    def action_toggle_seed_lock(self) -> None:
        self.query_one(SettingsPanel).toggle_seed_lock()

    def action_reuse_seed(self) -> None:
        self.query_one(SettingsPanel).reuse_seed()

    def action_adjust(self, key: str, direction: int) -> None:
        self.query_one(SettingsPanel).adjust(key, direction)

    # --- settings ---------------------------------------------------------------------------

    def show_seed_lock(self) -> None:
        """The header says so while a seed is locked: at every width, the settings panel shown or not."""
        seed = self.session.settings.seed
        self.app.title = "sdtui" if seed == "random" else f"sdtui · seed {seed} locked"

    @on(Input.Changed, "#negative")
    def _negative_changed(self, event: Input.Changed) -> None:
        settings = replace(self.session.settings, negative_prompt=event.value)
        self._say_change("negative_prompt", self.session.change_settings(settings, "negative_prompt"))

    @on(SettingsPanel.Changed)
    def _setting_changed(self, message: SettingsPanel.Changed) -> None:
        self._say_change(message.key, message.change)

    def _say_change(self, key: str, change) -> None:
        """What came of a change of settings the Session took (a SettingsChange)."""
        settings = self.session.settings
        if change.not_saved:
            self.app.notify(change.not_saved, severity="warning")
        if key == "seed":
            self.show_seed_lock()
        if change.already_loaded:
            self.log_line(f"{settings.model} is already loaded; nothing to do")
        elif change.ahead:
            what = settings.model if key == "model" else f"the model with {key} {getattr(settings, key)}"
            self.log_line(f"loading {what} after {plural(change.ahead, 'job')} ahead of it")
            from tui.client.subtitle import with_waiting

            self.app.sub_title = with_waiting(self.app.sub_title, what, change.ahead)
        if change.not_loaded:
            self.app.notify(f"Not loaded: {change.not_loaded}.", severity="error", timeout=8)

    # --- what the server says: the header, the dialogs, the other screens ---------------------

    @on(m.Connected)
    @on(m.ServerLost)
    @on(m.ServerEvent)
    def _header(self, message) -> None:
        from tui.client.subtitle import subtitle_for  # with the first message, not the first frame

        subtitle = subtitle_for(message, self.session)
        if subtitle is not None:
            self.app.sub_title = subtitle

    @on(m.ServerLost)
    def _server_lost(self, message: m.ServerLost) -> None:
        reason = message.message.rstrip(".")
        said = reason[0].upper() + reason[1:] if reason.startswith("the sdtui server ") \
            else f"The sdtui server stopped: {reason}"
        logs = self.session.places.logs_dir  # sdtui.log: the server's log lines; server.log: its start, stop and crash
        self.log_line(f"{said}. Images already saved are in the history; sdtui.log and server.log in {logs} may "
                      "say why.", "error")

        def answered(yes: bool | None) -> None:
            if yes:
                self.app.palette.restart_server()
            else:
                self.log_line("not restarting; the palette's \"server: restart\" starts it when you want")

        self.app.push_screen(ConfirmScreen(f"{said}. Start it again?"), answered)

    @on(m.Loaded)
    def _loaded(self, message: m.Loaded) -> None:
        from tui.client.family_fields import fields_for

        family = fields_for(self.session.family)
        panel = self.query_one(SettingsPanel)
        panel.use_family(family)  # first: the sampler the Session took is among the family's
        panel.show([*message.defaults, *message.adjusted])
        self.query_one("#negative", Input).display = family.negative_prompt

    @on(m.LoadFailed)
    def _load_failed(self, message: m.LoadFailed) -> None:
        if message.event.kept is not None:  # the settings name the model kept again
            self.query_one(SettingsPanel).show(["model"])

    @on(m.GridFinished)
    def _grid_finished(self, message: m.GridFinished) -> None:
        self.app.palette.save_grid(message.grid)

    @on(m.ImageSaved)
    @on(m.JobDone)
    @on(StatusPanel.Progressed)
    def _follow_in_history(self, message) -> None:
        from tui.client.screens.history import follow_jobs  # with the first job, not the first frame

        follow_jobs(self.app.screen_stack, message, self.session)

    @on(m.JobDone)
    def _job_done(self, message: m.JobDone) -> None:
        self._images_this_run += message.event.images
        if self.session.waiting == 0:
            self.app.terminal.queue_done(self._images_this_run)
            self._images_this_run = 0
