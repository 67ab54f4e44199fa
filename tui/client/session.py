"""The interface's one link to the engine: the settings, the connection to the sdtui server,
and the history it reads.

The app is a client. The Session connects to the server for this sdtui home (starting one in
the background when none runs) or, given a ``host``, first stands the same server up on a thread
of this process (``sdtui --no-server``, and the tests; the caller hands it in, so the interface
never imports the server). Either way everything goes through the socket:
what the app sends is a job, a load or a cancel, each carrying what it needs; what comes back
becomes one Textual message per event, posted from the reader thread. The Session keeps a copy
of the server's state (model, running job, queue) from those events, for the screens to read.

No Textual widgets and no torch here: only messages, the protocol and the store.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from tui.config import Settings, save_settings
from tui.engine.events import (Cancelled, DownloadProgress, Failed, Finished, Loaded, LoadStarted, Notice, Started,
                               Step)
from tui.engine.families import ModelFamily
from tui.engine.request import STRENGTH_DEFAULT, GenerationRequest
from tui.locations import Locations
from tui.client.messages import (Connected, DownloadMoved, EngineNotice, HistoryRepaired, ImageMade, ImageNotSaved,
                          ImageReady, JobCancelled, JobEnded, JobFailed, JobQueued, JobRefused, JobStarted, LogLine,
                          ModelFailed, ModelLoading, ModelReady, ModelUnloaded, QueueCleared, QueueUpdated, ServerLost,
                          StepMade)
from tui.wire.protocol import ProtocolError, decode_event
from tui.store.history import History
from tui.store.thumbs import ThumbnailCache

log = logging.getLogger("tui.client.session")
# How long quitting waits for an in-process server's running step to end, so the job is recorded
# as cancelled; a longer step is left unrecorded, with nothing lost but the job.
QUIT_GRACE_S = 0.6
READ_TICK_S = 0.5  # every wait of the reader thread is bounded by this


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
        self.connection = None
        self.hosted = None  # the server this process stood up, if any
        self._reader: threading.Thread | None = None
        self._closing = threading.Event()
        self._refs = itertools.count(1)
        self._what: dict[int, str] = {}  # a generate message's tag -> why it was queued
        self.strength = STRENGTH_DEFAULT  # image-to-image from history; [ and ] change it
        self._told_moved_aside = False
        self._made: tuple | None = None  # ((job, index), image) of the image finished and being saved
        # The server's state as its welcome and events tell it.
        self.connected = False
        self.model: str | None = None  # the loaded model's label
        self.loaded_ref: str | None = None  # the loaded model as its setting names it
        self.device = self.dtype = ""
        self.family: ModelFamily | None = None
        self.slicing: bool | None = None
        self.running: int | None = None
        self.waiting = 0
        self.loading = False

    @property
    def outputs_dir(self) -> Path:
        configured = self.settings.outputs_dir
        return Path(configured).expanduser() if configured else self.places.outputs_dir

    @property
    def busy(self) -> bool:
        """A job runs now."""
        return self.running is not None

    # --- the connection -------------------------------------------------------------------

    def start(self) -> None:
        """Connect (or start the server) on a thread; the outcome arrives as Connected or ServerLost."""
        self._closing.clear()
        self._reader = threading.Thread(target=self._run, name="sdtui-session", daemon=True)
        self._reader.start()

    def _run(self) -> None:
        from tui.client.connection import ServerGone, ServerRefused

        try:
            connection, started = self._connect()
        except (ServerGone, ServerRefused, OSError) as error:
            if not self._closing.is_set():
                self.post(ServerLost(str(error)))
            return
        self.connection = connection
        self._take_state(connection.welcome)
        self.connected = True
        self.post(Connected(connection.welcome, started))
        try:
            connection.send({"type": "reconcile", "outputs_dir": self._outputs_setting()})
            self.load()
            while not self._closing.is_set():
                frame = connection.receive(timeout=READ_TICK_S)
                if frame is not None:
                    message = self._message(*frame)
                    if message is not None:
                        self.post(message)
        except (ServerGone, ProtocolError) as error:
            self._disconnected(connection)
            if not self._closing.is_set():
                self.post(ServerLost(str(error)))
        finally:
            self._disconnected(connection)

    def _disconnected(self, connection) -> None:
        self.connected = False  # before ServerLost is posted: a restart it leads to must not be refused
        self.running, self.loading, self.model = None, False, None
        connection.close()

    def _connect(self):
        """The connection, and whether this client started the server."""
        from tui.client.connection import connect, connect_or_start

        if self.host is not None:
            self.hosted = self.host()
            return connect(self.places.data_dir, "app"), self.hosted is not None
        started = []
        log_file = self.places.logs_dir / "server.log"
        connection = connect_or_start(self.places.data_dir, "app", log_file, logs=True,
                                      on_start=lambda: started.append(log_file))
        if started:
            log.info("started the sdtui server in the background (its log: %s)", log_file)
        return connection, bool(started)

    def close(self) -> None:
        """Leave: the server and its jobs go on, unless it runs in this process (then it stops,
        the running job ends at its step and is recorded as cancelled)."""
        self._closing.set()
        if self.connection is not None:
            self.connection.close()
        if self.hosted is not None:
            self.hosted.stop(wait_s=QUIT_GRACE_S + 2 * READ_TICK_S)

    def restart(self) -> None:
        """Connect again after the server went away, starting a new one."""
        if self.connected:
            return
        self.hosted = None
        self.start()

    def _send(self, message: dict[str, Any]) -> str | None:
        """Send ``message``; None, or one sentence saying why it could not go."""
        from tui.client.connection import ServerGone

        if not self.connected or self.connection is None:
            return "the sdtui server is not connected yet" if not self._closing.is_set() else "sdtui is stopping"
        try:
            self.connection.send(message)
        except ServerGone as error:
            return str(error)
        return None

    # --- what the interface asks for ------------------------------------------------------

    def engine_options(self) -> dict[str, Any]:
        """What the engine needs from the settings; it travels with each job and load."""
        s = self.settings
        return {"model": s.model, "device": s.device, "dtype": s.dtype, "attention_slicing": s.attention_slicing,
                "warmup": s.warmup, "allow_pickle": self.allow_pickle, "previews": s.previews,
                "preview_interval": s.preview_interval, "preview_max_fps": s.preview_max_fps,
                "models_dir": str(s.models_folder(self.places.models_dir))}

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

    def generate(self, request: GenerationRequest, what: str = "") -> str | None:
        """Queue ``request`` with the settings as they are now; JobQueued (or JobRefused) follows."""
        ref = next(self._refs)
        self._what[ref] = what
        problem = self._send({"type": "generate", "ref": ref, "request": request.to_dict(),
                              "options": self.engine_options(), "outputs_dir": self._outputs_setting()})
        if problem:
            self._what.pop(ref, None)
        return problem

    def cancel(self) -> str | None:
        """Cancel the running job, or else a model load in progress: "job", "load" or None."""
        if self.running is not None:
            return "job" if self._send({"type": "cancel", "job": self.running}) is None else None
        if self.loading:
            return "load" if self._send({"type": "cancel", "job": "load"}) is None else None
        return None

    def clear_queue(self) -> str | None:
        return self._send({"type": "clear_queue"})

    def change_settings(self, settings: Settings) -> str | None:
        """Take ``settings`` as the one copy, and save them (with config.toml's own seed); None, or
        why they were not saved."""
        self.settings = settings
        return self._save()

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

    def history_notices(self, state: dict[str, Any]) -> list[str]:
        """What repairing the history changed, each said once: this client moving an unreadable
        database aside (it opened the history first), and the server's reconcile at its start."""
        from tui.store.history import ReconcileReport

        notices = []
        if self.history.moved_aside and not self._told_moved_aside:
            self._told_moved_aside = True
            notices.append(ReconcileReport(moved_aside=self.history.moved_aside).message())
        if state.get("history_notice"):
            notices.append(str(state["history_notice"]))
        return notices

    # --- what the server says ---------------------------------------------------------------

    def _take_state(self, state: dict[str, Any]) -> None:
        self.model, self.loaded_ref = state.get("model"), state.get("loaded")
        self.device, self.dtype = state.get("device") or "", state.get("dtype") or ""
        family = state.get("family_info")
        self.family = ModelFamily(**family) if isinstance(family, dict) else None
        self.slicing = state.get("slicing")
        self.running = state.get("running")
        self.waiting = len(state.get("waiting") or ())
        self.loading = bool(state.get("loading"))

    def _message(self, frame: dict[str, Any], payload: bytes):
        """The Textual message for one frame from the server, or None for replies nobody waits on."""
        from tui.client.connection import ServerGone

        kind = frame.get("type")
        if kind == "event":
            return self._event(frame, payload)
        if kind == "log":
            return LogLine(str(frame.get("level") or "info"), str(frame.get("text") or ""),
                           float(frame.get("created") or time.time()))
        if kind == "queued":
            return JobQueued(frame["job"], GenerationRequest(**frame["request"]), self._what.pop(frame.get("ref"), ""))
        if kind == "error":
            self._what.pop(frame.get("ref"), None)
            return JobRefused(str(frame.get("message")))
        if kind == "cleared":
            return QueueCleared(int(frame.get("count") or 0))
        if kind == "bye":
            raise ServerGone(str(frame.get("message") or "the sdtui server stopped"))
        return None

    def _event(self, frame: dict[str, Any], payload: bytes):
        job = frame.get("job")
        event = decode_event(frame, payload)
        if isinstance(event, Step):
            return StepMade(job, event)
        if isinstance(event, Started):
            return JobStarted(job, event.request, event.images, event.steps)
        if isinstance(event, Finished):
            self._made = ((job, event.index), event.image)
            return ImageMade(job, event.image, event.seed, event.request)
        if isinstance(event, Cancelled):
            return JobCancelled(job, event.completed)
        if isinstance(event, Failed):
            return JobFailed(job, event.message)
        if isinstance(event, LoadStarted):
            self.loading = True
            return ModelLoading(event.model)
        if isinstance(event, DownloadProgress):
            return DownloadMoved(event.model, event.done_bytes, event.total_bytes)
        if isinstance(event, Loaded):
            self.model, self.device, self.dtype = event.model, event.device, event.dtype
            self.family = event.family_info
            self.loaded_ref = event.setting or None  # whichever client's load or job it was
            self.slicing = any(d.startswith("attention slicing: on") for d in event.decisions)
            return ModelReady(event)
        if isinstance(event, Notice):
            return EngineNotice(event.message, event.level)
        return self._queue_event(job, event)

    def _queue_event(self, job: int | None, data: dict[str, Any]):
        name = data.get("event")
        if name == "QueueChanged":
            self.waiting, self.running = int(data.get("waiting") or 0), data.get("running_job")
            self.loading = bool(data.get("loading"))
            return QueueUpdated(self.waiting, self.running, self.loading)
        if name == "Queued":  # another client's job (this client's own come as the reply to its generate)
            return JobQueued(job, GenerationRequest(**data["request"]), f"by {data.get('client') or 'another client'}")
        if name == "ImageSaved":
            path = Path(data["path"])
            made, self._made = self._made, None
            image = made[1] if made and made[0] == (job, data.get("index")) else read_image(path)
            return ImageReady(job, image, path, data["seed"], GenerationRequest(**data["request"]))
        if name == "JobDone":
            return JobEnded(job, int(data.get("images") or 0), str(data.get("ended") or "done"),
                            str(data.get("reason") or ""))
        if name == "HistoryRepaired":
            return HistoryRepaired(str(data.get("message")))
        if name == "SaveFailed":
            return ImageNotSaved(str(data.get("message")))
        if name == "LoadFailed":
            kept = data.get("kept")
            if kept is None:
                self.model = self.loaded_ref = None
            return ModelFailed(str(data.get("model")), str(data.get("message")), kept)
        if name == "Unloaded":
            from tui.wire.protocol import memory_sample

            self.model = self.loaded_ref = None
            return ModelUnloaded(str(data.get("model")), memory_sample(data.get("memory")))
        if name == "ServiceCrashed":
            return EngineNotice(f"The server's generation thread stopped ({data.get('message')}); run `sdtui stop`, "
                                "then start sdtui again.", "error")
        return None


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
