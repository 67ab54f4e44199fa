"""A scripted engine for interface tests: the real Engine's interface, no pipeline.

``tui.server.host.stand_up(places, engine=...)`` and ``tests.app_helpers.make_app(engine=...)``
take it (or a factory of it) in place of ``tui.engine.Engine``. It emits the engine's own
events (tui/engine/events.py) in milliseconds, so a test of keys, screens, the log, toasts,
previews or the queue's messages does not wait on a pipeline that holds the GIL. What it
does can be scripted:

    ScriptedEngine(step_s=0.05)                 every step takes 50 ms
    ScriptedEngine(hold_at_step=2)              the first job to reach step 2 waits there until
                                                ``release()`` or its cancel: keys can be pressed
                                                meanwhile (set it again for another hold)
    ScriptedEngine(fail_at_step=3)              the first job to reach step 3 runs out of memory
                                                there (``out_of_memory=False``: another failure)
    ScriptedEngine(download=0.4)                a load downloads and reports 40 % first;
                                                ``hold_download=True`` keeps the first one there
                                                until ``release()`` or the load is cancelled
    ScriptedEngine(load_errors={"x/y": "..."})  loading that model fails with that message
    ScriptedEngine(notices=[("...", "warning")]) Notices sent with each load

Model names resolve as the real engine resolves them (``resolve_source``): "demo" is the demo
model, with its label and family; a name that is no folder, file or Hub id fails as it would.
Every call is recorded in ``calls`` (("load", model), ("generate", prompt), ("unload", label)).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from tui.engine import device as devices
from tui.engine.cancel import CancelScope
from tui.engine.events import (Cancelled, DownloadProgress, Failed, Finished, Loaded, LoadStarted, Notice, Started,
                               Step, Timings, Unloaded)
from tui.engine.families import SD1, ModelFamily
from tui.engine.memory import MemorySample
from tui.engine.options import EngineOptions
from tui.engine.preview import PreviewThrottle
from tui.engine.request import GenerationRequest
from tui.engine.runner import total_steps_of

log = logging.getLogger("tui.engine")  # the real engine's logger: its lines reach the app's log the same way

DOWNLOAD_BYTES = 2_000_000_000  # what a scripted download says the model weighs
MEMORY = MemorySample(device_allocated=None, device_reserved=None, device_limit=None, process_rss=300_000_000,
                      system_used=4_000_000_000, system_total=8_000_000_000, swap_used=0)


def _ignore(_event) -> None:
    pass


@dataclass
class ScriptedEngine:
    options: EngineOptions = field(default_factory=lambda: EngineOptions(model="demo"))
    step_s: float = 0.0  # how long each step takes
    hold_at_step: int | None = None  # the first job to reach this step (1-based) waits for release() or its cancel
    fail_at_step: int | None = None  # the first job to reach this step fails there
    out_of_memory: bool = True  # how it fails: out of memory, else a pipeline error
    download: float | None = None  # a load first downloads, reporting this fraction (0.4: 40 %)
    hold_download: bool = False  # ... and stays there until release() or its cancel
    load_s: float = 0.0  # how long a load takes
    load_errors: dict[str, str] = field(default_factory=dict)  # model setting -> the load's error message
    notices: list[tuple[str, str]] = field(default_factory=list)  # (message, level) sent with each load
    family_info_for: Callable[[str], ModelFamily] = field(default=lambda model: ModelFamily(SD1))

    def __post_init__(self):
        self.model_label = ""
        self.family = ""
        self.family_info: ModelFamily | None = None
        self.device = ""
        self.dtype = ""
        self.load_seconds = 0.0
        self.decisions: list = []
        self.machine: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []
        self._loaded_options: EngineOptions | None = None
        self._loaded_event: Loaded | None = None
        self._slicing = False
        self._cancels = CancelScope()
        self._released = threading.Event()
        self.holding = threading.Event()  # set while a job or download waits for release()

    # --- what a test does -----------------------------------------------------------------

    def release(self) -> None:
        """Let the held job or download go on (or the next to reach its hold pass it)."""
        self._released.set()

    def wait_holding(self, timeout: float = 10.0) -> None:
        assert self.holding.wait(timeout), "the scripted engine never reached its hold"

    # --- the Engine's interface -------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._loaded_options is not None

    @property
    def loaded_model(self) -> str | None:
        return self._loaded_options.model if self._loaded_options else None

    @property
    def attention_slicing_active(self) -> bool:
        return self._slicing

    def describe(self) -> dict[str, Any]:
        return {"model": self.model_label, "family": self.family, "device": self.device, "dtype": self.dtype,
                **self.machine}

    def cancel(self) -> bool:
        return self._cancels.cancel()

    def load(self, on_event=_ignore, cancel: threading.Event | None = None, quiet_if_loaded: bool = False) -> None:
        with self._cancels.operation(cancel) as token:
            self._load(on_event, token, quiet_if_loaded)

    def _load(self, on_event, cancel: threading.Event, quiet_if_loaded: bool = False) -> None:
        from tui.engine.models import ModelLoadError, resolve_source

        options = self.options
        self.calls.append(("load", options.model))
        source = resolve_source(options.model)
        device = devices.choose_device(options.device, False, False)
        dtype = devices.choose_dtype(options.dtype, device.value)
        if self.loaded and self._loaded_options.model == options.model and self._loaded_event is not None:
            if not quiet_if_loaded:
                on_event(self._loaded_event)
            return
        on_event(LoadStarted(source.label, source.kind))
        started = time.perf_counter()
        if self.download is not None:
            done = int(DOWNLOAD_BYTES * self.download)
            on_event(DownloadProgress(source.label, done, DOWNLOAD_BYTES))
            if self.hold_download:
                self.hold_download = False  # one hold: the loads after it run through
                self._hold(cancel)
            if cancel.is_set():
                raise ModelLoadError(f"model: downloading {source.ref} was cancelled; choose it again to resume "
                                     "where it stopped")
            on_event(DownloadProgress(source.label, DOWNLOAD_BYTES, DOWNLOAD_BYTES))
        if self.load_s:
            cancel.wait(self.load_s)
        if options.model in self.load_errors:
            raise ModelLoadError(self.load_errors[options.model])
        self.unload(on_event)
        family = self.family_info_for(options.model)
        slicing = devices.choose_attention_slicing(options.attention_slicing, device.value, 8_000_000_000,
                                                   family.base)
        self.decisions = [device, dtype, slicing]
        for decision in self.decisions:
            log.info(decision.describe())
        for message, level in self.notices:
            on_event(Notice(message, level))
        self._slicing = bool(slicing.value)
        self.model_label = source.label
        self.family_info = family
        self.family = family.label + (" (demo)" if source.kind == "demo" else "")
        self.device, self.dtype = device.value, dtype.value
        self.machine = {"torch": "scripted"}
        self.load_seconds = time.perf_counter() - started
        log.info("loaded %s (%s) on %s in %.1f s", self.model_label, self.family, self.device, self.load_seconds)
        self._loaded_options = replace(options)
        self._loaded_event = Loaded(self.model_label, self.family, self.device, self.dtype, self.load_seconds,
                                    tuple(d.describe() for d in self.decisions), family, MEMORY, options.model)
        on_event(self._loaded_event)

    def unload(self, on_event=_ignore) -> None:
        if not self.loaded:
            return
        self.calls.append(("unload", self.model_label))
        label = self.model_label
        self._loaded_options = self._loaded_event = None
        log.info("unloaded %s", label)
        on_event(Unloaded(label, MEMORY))

    def _hold(self, cancel: threading.Event) -> None:
        """Wait for release() or the cancel; either way the release is used up."""
        self.holding.set()
        try:
            while not self._released.is_set() and not cancel.is_set():
                cancel.wait(0.005)
        finally:
            self._released.clear()
            self.holding.clear()

    def generate(self, request: GenerationRequest, on_event=_ignore,
                 cancel: threading.Event | None = None) -> list[Finished]:
        called = time.perf_counter()
        with self._cancels.operation(cancel) as token:
            return self._generate(request.with_seed(), on_event, called, token)

    def _generate(self, request: GenerationRequest, on_event, called: float,
                  cancel: threading.Event) -> list[Finished]:
        from tui.engine.img2img import InitImageError, load_init_image
        from tui.engine.models import ModelLoadError

        self.calls.append(("generate", request.prompt))
        results: list[Finished] = []
        try:
            if not self.loaded:
                self._load(on_event, cancel)
            if request.init_image:
                load_init_image(request.init_image, (request.width, request.height))
        except (ModelLoadError, devices.DeviceError, InitImageError) as error:
            log.error(str(error))
            on_event(Failed(request, str(error)))
            return results
        total = total_steps_of(request)
        on_event(Started(request, request.count, total))
        for index in range(request.count):
            began = time.perf_counter()
            throttle = PreviewThrottle(self.options.preview_interval, self.options.preview_max_fps)
            last = began
            for step in range(1, total + 1):
                if self.step_s:
                    cancel.wait(self.step_s)
                if step == self.hold_at_step:
                    self.hold_at_step = None  # one hold: the jobs after it run through
                    self._hold(cancel)
                if cancel.is_set():
                    log.info("cancelled after %d of %d images", len(results), request.count)
                    on_event(Cancelled(request, len(results)))
                    return results
                if step == self.fail_at_step:
                    self.fail_at_step = None  # one failure: the next job runs (set it again for another)
                    message = (f"out of memory on {self.device} at {request.width}x{request.height}; turn attention "
                               "slicing on, use a smaller size or fewer images at once") if self.out_of_memory \
                        else "generation failed: RuntimeError: the scripted engine failed"
                    log.error(message)
                    on_event(Failed(request, message, out_of_memory=self.out_of_memory, completed=len(results)))
                    return results
                now = time.perf_counter()
                preview = None
                if self.options.previews and step < total and throttle.due(step - 1, now):
                    preview = picture(request.seed_for(index) + step, (max(1, request.width // 8),
                                                                       max(1, request.height // 8)))
                elapsed = max(now - began, 1e-6)
                on_event(Step(index, step, total, elapsed, now - last, step / elapsed, MEMORY, preview))
                last = now
            total_s = time.perf_counter() - began
            seed = request.seed_for(index)
            timings = Timings(load_s=self.load_seconds, first_step_s=total_s, total_s=total_s,
                              it_per_s=total / total_s if total_s else 0.0, peak_memory=MEMORY.process_rss)
            finished = Finished(picture(seed, (request.width, request.height)), index, seed, request, timings,
                                self.describe())
            on_event(finished)
            results.append(finished)
        return results


def picture(seed: int, size: tuple[int, int]):
    """An image of ``size`` that depends on ``seed`` only: the same seed, the same pixels."""
    from PIL import Image

    rng = random.Random(seed)
    small = Image.frombytes("RGB", (8, 8), rng.randbytes(8 * 8 * 3))
    return small.resize(size, Image.NEAREST)


def scripted(**script) -> Callable[[], ScriptedEngine]:
    """An engine factory for ``make_app(engine=...)``; the engine it made is in ``factory.engine``."""
    def factory() -> ScriptedEngine:
        factory.engine = ScriptedEngine(**script)
        return factory.engine

    factory.engine = None
    return factory


@contextmanager
def serving(home: Path, engine=None, **script):
    """The real server for the sdtui home ``home`` on a thread of this process, its engine
    ``engine`` or else a ScriptedEngine(**script): a client in another process (the app in a
    terminal, ``sdtui generate``) finds it running and connects to it as to ``sdtui serve``. A test
    of keys, signals or the queue then does not wait on the demo pipeline, and with the real engine
    a test of what the command line says does not wait on a new process importing torch and
    diffusers (5 to 8 s here). Stopped on leaving; the client must not run ``sdtui stop``, which
    would wait for this process to end."""
    from tui.locations import Locations
    from tui.server.host import stand_up

    root = Path(home).resolve()
    root.mkdir(parents=True, exist_ok=True)
    tui_log = logging.getLogger("tui")
    level = tui_log.level
    tui_log.setLevel(logging.INFO)  # as ``sdtui serve`` logs: its clients show "loaded ..." and the rest
    host = stand_up(Locations(config_dir=root, data_dir=root), engine=engine or ScriptedEngine(**script)).start()
    try:
        yield host
    finally:
        host.stop("the test is over", wait_s=5)
        tui_log.setLevel(level)
