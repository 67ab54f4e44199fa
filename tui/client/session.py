"""The interface's one link to the engine: the settings, the server's state as this client
knows it, and the history it reads.

The app is a client. A ServerLink (tui/client/link.py) connects on its own thread to the server
for this sdtui home (starting one in the background when none runs) or, given a ``host``, first
stands the same server up on a thread of this process (``sdtui --no-server``, and the tests; the
caller hands it in, so the interface never imports the server). What the app sends is a job, a
load or a cancel, each carrying what it needs.

What comes back waits in the Session's inbox until the UI thread drains it: the Session takes
each event into its state there, in the server's order, then posts the event's message
(message_for). So the state is only ever written on the UI thread, and a handler sees it as of
its own event or later, never half-written.

No Textual widgets and no torch here: only messages, the protocol and the store.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection

from tui.client import messages as m
from tui.config import Settings, save_settings
from tui.engine.families import ModelFamily
from tui.engine.memory import MemorySample
from tui.engine.request import STRENGTH_DEFAULT, GenerationRequest
from tui.locations import Locations
from tui.store.history import History
from tui.store.thumbs import ThumbnailCache
if TYPE_CHECKING:  # the link and the wire load when the app connects, after the first frame
    from tui.client import link
    from tui.wire import events as wire

log = logging.getLogger("tui.client.session")
# How long quitting waits for an in-process server's running step to end, so the job is recorded
# as cancelled; a longer step is left unrecorded, with nothing lost but the job.
QUIT_GRACE_S = 0.6


class Session:
    def __init__(self, settings: Settings, places: Locations, host: Callable[[], Any] | None = None,
                 allow_pickle: bool = False, save: bool = True) -> None:
        self.settings = settings
        # The seed config.toml holds: a seed locked in the app holds for this run only, so the app
        # writes this one back, never its own, unless the user asks (save_seed_as_default).
        self.saved_seed = settings.seed
        self.places = places
        self.host = host  # stands a server up in this process: its Host, or None when one already runs
        self.allow_pickle = allow_pickle
        self.save = save
        self.history = History(places.history_db, self.outputs_dir)
        self.thumbs = ThumbnailCache(places.data_dir / "thumbs")
        self.post: Callable[[Any], None] = lambda message: None  # set by the app: where messages go
        self.wake: Callable[[], None] = lambda: None  # set by the app: called (on any thread) when the inbox fills
        self.link: link.ServerLink | None = None
        self._inbox: deque = deque()
        self._refs = itertools.count(1)
        self._what: dict[int, str] = {}  # a generate message's tag -> why it was queued
        self._cells: dict[int, tuple[Any, int]] = {}  # a generate message's tag -> its X/Y grid and cell
        self.grids: list = []  # X/Y grids (PendingGrid) whose jobs have not all ended
        self._grid_serial = 0
        self.strength = STRENGTH_DEFAULT  # image-to-image from history; [ and ] change it
        self._told_moved_aside = False
        self._made: tuple | None = None  # ((job, index), image) of the image finished and being saved
        self._switching = False  # the user picked another model: its family's defaults apply once loaded
        self._switch_from: ModelFamily | None = None  # the family before the switch
        self._kept: frozenset[str] = frozenset()  # settings a switch leaves alone (given on the command line)
        # The server's state as its welcome and events tell it.
        self.connected = False
        self.model: str | None = None  # the loaded model's label
        self.loaded_ref: str | None = None  # the loaded model as its setting names it
        self.device = self.dtype = ""
        self.memory: MemorySample | None = None  # the server's latest reading (at a load, a step, an unload)
        self.family: ModelFamily | None = None
        self.slicing: bool | None = None
        self.running: int | None = None
        self.waiting = 0
        self.loading = False
        self.clients: tuple[str, ...] = ()  # the kind of each client connected, this one included
        self.jobs_ended = 0  # JobDone events taken since this client connected, any client's jobs
        # The images as this client saw them: the running job's request (its seed resolved) and
        # the image of it on its way, and the last image saved (or, at start, the history's last).
        self.making: GenerationRequest | None = None
        self.making_index = 0
        self._making_job: int | None = None
        self.last_seed: int | None = None
        self.last_path: str | None = None

    @property
    def outputs_dir(self) -> Path:
        configured = self.settings.outputs_dir
        return Path(configured).expanduser() if configured else self.places.outputs_dir

    @property
    def models_dir(self) -> Path:
        """The models folder the settings name (loras/ and embeddings/ are in it), else the home's."""
        return self.settings.models_folder(self.places.models_dir)

    @property
    def busy(self) -> bool:
        """A job runs now."""
        return self.running is not None

    @property
    def hosted(self):
        """The server this process stood up, if any (``--no-server``, the tests)."""
        return self.link.hosted if self.link is not None else None

    # --- the connection -------------------------------------------------------------------

    def start(self) -> None:
        """Connect (or start the server) on the link's thread; Connected or ServerLost follows."""
        from tui.client import link  # after the first frame, with the wire it reads

        self.link = link.ServerLink(self.places, self.host, self.arrive)
        self.link.start()

    def close(self) -> None:
        """Leave: the server and its jobs go on, unless it runs in this process (then it stops,
        the running job ends at its step and is recorded as cancelled)."""
        if self.link is not None:
            from tui.client.link import READ_TICK_S

            self.link.close(wait_s=QUIT_GRACE_S + 2 * READ_TICK_S)
        self.connected, self.running, self.loading = False, None, False

    def restart(self) -> None:
        """Connect again after the server went away, starting a new one."""
        if self.connected:
            return
        if self.link is not None:
            self.link.close()
        self.start()

    def _send(self, message: dict[str, Any]) -> str | None:
        """Send ``message``; None, or one sentence saying why it could not go."""
        if not self.connected or self.link is None:
            closing = self.link is not None and self.link.closing
            return "sdtui is stopping" if closing else "the sdtui server is not connected yet"
        return self.link.send(message)

    # --- what the server says, in its order -----------------------------------------------

    def arrive(self, arrival: Any) -> None:
        """From the link's thread: keep ``arrival`` for the UI thread, and wake it."""
        self._inbox.append(arrival)
        self.wake()

    def drain(self) -> None:
        """On the UI thread: take every arrival into the state, in order, and post its message."""
        while self._inbox:
            arrival = self._inbox.popleft()
            message = self._take(arrival)
            if message is not None:
                self.post(message)

    # --- what the interface asks for ------------------------------------------------------

    def engine_options(self) -> dict[str, Any]:
        """What the engine needs from the settings (every field of EngineOptions); it travels with
        each job and load."""
        return {**self.settings.engine_fields(), "allow_pickle": self.allow_pickle,
                "models_dir": str(self.models_dir)}

    def _outputs_setting(self) -> str | None:
        """The outputs folder when the settings name one (else the server uses its own default)."""
        return str(self.outputs_dir.resolve()) if self.settings.outputs_dir else None

    def load(self) -> str | None:
        """Load the settings' model (nothing happens on the server when it is the loaded one)."""
        return self._send({"type": "load", "options": self.engine_options()})

    def expanded(self, request: GenerationRequest) -> list[GenerationRequest]:
        """One request per prompt of ``request``'s wildcard template (itself when it has none);
        raises WildcardError in one sentence."""
        from tui.wildcards import expanded_requests

        return expanded_requests(request, self.places.wildcards_dir)

    def queue(self, request: GenerationRequest, what: str = "", cell: tuple[Any, int] | None = None) -> str | None:
        """Queue ``request`` with the settings as they are now; Queued (or Refused) follows.
        ``cell``: the X/Y grid and cell the job makes."""
        ref = next(self._refs)
        self._what[ref] = what
        if cell is not None:
            self._cells[ref] = cell
        problem = self._send({"type": "generate", "ref": ref, "request": request.to_dict(),
                              "options": self.engine_options(), "outputs_dir": self._outputs_setting()})
        if problem:
            self._what.pop(ref, None)
            self._cells.pop(ref, None)
        return problem

    def queue_grid(self, requests: list[GenerationRequest], axes: list) -> tuple[Any, list[str]]:
        """Queue an X/Y grid's jobs, one per cell; the grid, and why any cell was not queued.
        GridFinished follows once every cell's job has ended."""
        from tui.client.grid import PendingGrid

        self._grid_serial += 1
        grid = PendingGrid(self._grid_serial, requests, axes)
        self.grids.append(grid)
        problems = []
        for cell, request in enumerate(requests):
            problem = self.queue(request, grid.tag(cell), (grid, cell))
            if problem:
                problems.append(problem)
                self._cell_ended(grid, -1 - cell)  # never queued: counts as ended with no image
        return grid, problems

    def _cell_ended(self, grid, job: int) -> None:
        grid.ended.add(job)
        if grid.finished and grid in self.grids:
            self.grids.remove(grid)
            self.post(m.GridFinished(grid))

    def _grid_job_ended(self, job: int | None) -> None:
        for grid in list(self.grids):
            if grid.cell_of_job(job) is not None:
                self._cell_ended(grid, job)

    def cancel(self) -> str | None:
        """Cancel the running job, or else a model load in progress: "job", "load" or None."""
        if self.running is not None:
            return "job" if self._send({"type": "cancel", "job": self.running}) is None else None
        if self.loading:
            return "load" if self._send({"type": "cancel", "job": "load"}) is None else None
        return None

    def clear_queue(self) -> str | None:
        return self._send({"type": "clear_queue"})

    def settings_request(self, prompt: str):
        """A request for ``prompt`` with the current settings (their negative prompt too), checked."""
        from tui.engine.request import validate_request

        return validate_request({**self.settings.request_fields(), "prompt": prompt})

    def change_settings(self, settings: Settings, key: str = "", reload: bool = False) -> "SettingsChange":
        """Take ``settings`` as the one copy and save them (with config.toml's own seed). A change
        of ``key`` that needs the model loaded again sends a load, which runs after the jobs
        already queued (they carry their own settings); a switch of model applies the new
        family's defaults once it has loaded (Loaded.defaults says which)."""
        self.settings = settings
        change = SettingsChange(not_saved=self._save())
        if not reload:
            return change
        if key == "model" and settings.model == self.loaded_ref and not self.loading:
            change.already_loaded = True
            return change
        if key == "model":
            self._switch_from = self.family
            self._switching = True
        change.ahead = self.waiting + (1 if self.busy else 0)
        change.not_loaded = self.load()
        return change

    def switching_at_start(self, kept: Collection[str] = ()) -> None:
        """The model to load first is not the one config.toml's settings were last used with (the
        command line named another): its family's defaults apply once it has loaded, as after a
        switch in the app, except to the settings in ``kept`` (those the command line gave too)."""
        self._switching, self._switch_from, self._kept = True, None, frozenset(kept)

    def current_seed(self) -> tuple[int | None, str]:
        """The seed of the image being made, else of the last one, and which it is."""
        if self.making is not None:
            return self.making.seed_for(self.making_index), "the image being made"
        return self.last_seed, "the last image's"

    def latest_image(self):
        """(entry, image) of the history's last image, taken as the last image while this client
        has seen none made; (None, None) once it has, or when there is none or it cannot be read."""
        entry = self.history.latest_done() if self.last_path is None else None
        image = read_image(entry.image_path) if entry is not None else None
        if image is None:
            return None, None
        self.last_seed, self.last_path = entry.seed, entry.image_path
        return entry, image

    def save_seed_as_default(self) -> str | None:
        """Make the seed as it is now config.toml's (every later run starts with it, the CLI's too)."""
        self.saved_seed = self.settings.seed
        return self._save()

    def _save(self) -> str | None:
        if not self.save:
            return None
        try:
            save_settings(replace(self.settings, seed=self.saved_seed), self.places.config_file)
        except OSError as error:
            return f"Settings not saved: {error.strerror} ({self.places.config_file})"
        return None

    def history_notices(self, state: wire.ServerState) -> list[str]:
        """What repairing the history changed, each said once: this client moving an unreadable
        database aside (it opened the history first), and the server's reconcile at its start."""
        from tui.store.history import ReconcileReport

        notices = []
        if self.history.moved_aside and not self._told_moved_aside:
            self._told_moved_aside = True
            notices.append(ReconcileReport(moved_aside=self.history.moved_aside).message())
        if state.history_notice:
            notices.append(state.history_notice)
        return notices

    def _take(self, arrival: Any):
        """Take one arrival into the state; the message to post for it, or None."""
        from tui.client import link
        from tui.wire import events as wire

        if isinstance(arrival, link.Event):
            return self._take_event(arrival.event, arrival.job)
        if isinstance(arrival, link.ServerLog):
            return m.LogLine(arrival.level, arrival.text, arrival.created)
        if isinstance(arrival, link.QueuedReply):
            what = self._what.pop(arrival.ref, "")
            cell = self._cells.pop(arrival.ref, None)
            if cell is not None:
                grid, index = cell
                grid.jobs[arrival.job] = index
            return m.Queued(wire.Queued(arrival.request, "app"), arrival.job, what)
        if isinstance(arrival, link.RefusedReply):
            self._what.pop(arrival.ref, None)
            cell = self._cells.pop(arrival.ref, None)
            if cell is not None:
                self._cell_ended(cell[0], -1 - cell[1])
            return m.Refused(arrival.message)
        if isinstance(arrival, link.ClearedReply):
            for grid in list(self.grids):  # their dropped cells stay grey; the sheet comes with what was made
                for job in list(grid.jobs):
                    if job != self.running and job not in grid.ended:
                        self._cell_ended(grid, job)
            return m.QueueCleared(arrival.count)
        if isinstance(arrival, link.Linked):
            self._take_state(arrival.state)
            self.connected = True
            self._send({"type": "reconcile", "outputs_dir": self._outputs_setting()})
            self.load()
            return m.Connected(arrival.state, arrival.started)
        if isinstance(arrival, link.Lost):
            # Before ServerLost is handled: a restart it leads to must not be refused.
            self.connected, self.running, self.loading, self.model = False, None, False, None
            self.making = None
            return m.ServerLost(arrival.message)
        return None

    def _after_a_load(self, loaded) -> dict[str, Any]:
        """Remember the model as recently used and, when the user just switched to it, take its
        family's defaults (size; steps and guidance for Turbo) into the settings: those it changed."""
        from tui.engine.catalog import remember_recent
        from tui.engine.families import defaults_on_switch

        remember_recent(self.places.recent_models_file, self.settings.model)
        family = loaded.family_info
        if not (self._switching and family is not None):
            return {}
        self._switching = False
        if not self.settings.family_defaults:
            return {}
        kept, self._kept = self._kept, frozenset()
        changes = {k: v for k, v in defaults_on_switch(self._switch_from, family).items()
                   if getattr(self.settings, k) != v and k not in kept}
        if changes:
            self.settings = replace(self.settings, **changes)
            self._save()
        return changes

    def _fit_to_family(self, model) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The loaded family's sampler in place of one it cannot use (a Z-Image model after an SD
        one, whatever family_defaults says: the job would fail), and the log's sentences for that
        and for the settings the family ignores."""
        from tui.client.family_fields import fields_for, sampler_for, unused_settings

        if model is None:
            return {}, ()
        fields = fields_for(model)
        adjusted, notes = {}, []
        sampler = sampler_for(fields, self.settings.scheduler)
        if sampler is not None:
            notes.append(f"scheduler: {self.settings.scheduler} does not work with {fields.label} models; "
                         f"using {sampler}")
            adjusted["scheduler"] = sampler
            self.settings = replace(self.settings, scheduler=sampler)
            self._save()
        notes.extend(unused_settings(fields, self.settings.negative_prompt, self.settings.guidance))
        return adjusted, tuple(notes)

    def _take_state(self, state: wire.ServerState) -> None:
        self.model, self.loaded_ref = state.model, state.loaded
        self.device, self.dtype = state.device or "", state.dtype or ""
        self.family = state.family_info
        self.slicing = state.slicing
        self.running = state.running
        self.waiting = len(state.waiting)
        self.loading = state.loading

    def _take_event(self, event: Any, job: int | None):
        from tui.wire import events as wire

        kind = type(event)
        if kind is wire.Started:
            self.making, self.making_index, self._making_job = event.request, 0, job
        elif kind is wire.Step:
            self.making_index = event.image_index
            self.memory = event.memory
        elif kind in (wire.Cancelled, wire.Failed):
            self.making = None
        elif kind is wire.Finished:
            self._made = ((job, event.index), event.image)
        elif kind is wire.LoadStarted:
            self.loading = True
        elif kind is wire.Loaded:
            self.model, self.device, self.dtype = event.model, event.device, event.dtype
            self.memory = event.memory or self.memory
            self.family = event.family_info
            self.loaded_ref = event.setting or None  # whichever client's load or job it was
            self.slicing = any(d.startswith("attention slicing: on") for d in event.decisions)
            defaults = self._after_a_load(event)
            adjusted, notes = self._fit_to_family(event.family_info)
            return m.Loaded(event, job, defaults=defaults, adjusted=adjusted, notes=notes)
        elif kind is wire.QueueChanged:
            self.waiting, self.running, self.loading = event.waiting, event.running_job, event.loading
        elif kind is wire.LoadFailed:
            self._switching = False
            if event.kept is None:
                self.model = self.loaded_ref = None
            else:  # the settings name the model still loaded again (no reload)
                self.settings = replace(self.settings, model=event.kept)
                self._save()
        elif kind is wire.Unloaded:
            self.model = self.loaded_ref = None
            self.memory = event.memory
        elif kind is wire.ClientsChanged:
            self.clients = event.clients
        elif kind is wire.JobDone:
            self.jobs_ended += 1
            if job == self._making_job:  # a waiting job's end (dropped, say) leaves the running one be
                self.making = None
            message = m.JobDone(event, job)
            self.post(message)  # before the grid it finishes, if any
            self._grid_job_ended(job)
            return None
        elif kind is wire.ImageSaved:
            self.last_seed, self.last_path = event.seed, str(event.path)
            made, self._made = self._made, None
            image = made[1] if made and made[0] == (job, event.index) else read_image(event.path)
            for grid in self.grids:
                cell = grid.cell_of_job(job)
                if cell is not None:
                    grid.cells[cell] = grid.cells[cell] or event.path
            return m.ImageSaved(event, job, image)
        elif kind is wire.Queued:  # another client's job (this client's own come as the reply to its generate)
            return m.Queued(event, job, f"by {event.client or 'another client'}")
        return m.message_for(kind)(event, job)


@dataclass
class SettingsChange:
    """What changing the settings led to, for the screen to say."""
    not_saved: str | None = None  # why config.toml was not written
    already_loaded: bool = False  # the model chosen is the loaded one: nothing to do
    ahead: int = 0  # jobs that run before the load this change sent
    not_loaded: str | None = None  # why the load could not be sent


def read_image(path: Path | str | None):
    """A saved image, read for the screen (None when there is none or it cannot be read)."""
    from PIL import Image

    if not path:
        return None
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError:
        return None
