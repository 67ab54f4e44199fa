"""The job queue between the interface and the engine.

One thread runs ``serve()``: it loads models and runs jobs one at a time, saving each
finished image with its history row, and reports everything through ``report``, a
thread-safe callback. The interface never touches the engine directly; it enqueues
commands here and reads what comes back. No Textual import: the app adapts the
reports into messages.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from tui.engine.events import Cancelled, Event, Failed, Finished
from tui.engine.request import GenerationRequest
from tui.server.jobs import JobRecorder, save_failure_message
from tui.logs import FOR_THE_LOG_FILE
from tui.wire.events import (HistoryRepaired, ImageSaved, JobDone, LoadFailed, QueueChanged, SaveFailed,
                             ServiceCrashed)
from tui.store.history import History

log = logging.getLogger("tui.server.queue")


@dataclass(frozen=True)
class LoadModel:
    options: Any  # EngineOptions
    cancel: threading.Event = field(default_factory=threading.Event, compare=False)
    for_a_job: bool = False  # a job's own check: silent when its model is the loaded one


@dataclass(frozen=True)
class Job:
    request: GenerationRequest
    number: int
    # This job's own cancel token: setting it stops this job and nothing else.
    cancel: threading.Event = field(default_factory=threading.Event, compare=False)
    # The engine options this job runs with (a server's jobs carry their own; None: as loaded).
    options: Any = None
    output: Path | None = None  # where its image goes (``--output``), else the outputs folder
    outputs_dir: Path | None = None  # the client's outputs folder setting
    # Called with the engine once the model is loaded, returning the request to run (family defaults).
    adjust: Callable[[Any, GenerationRequest], GenerationRequest] | None = field(default=None, compare=False)
    # Its client draws no previews (sdtui generate): it makes them anyway while a client that does watches.
    previews_for_others: bool = False


@dataclass(frozen=True)
class Unload:
    """Hand the model's memory back (an idle server's keep_alive ran out)."""
    cancel: threading.Event = field(default_factory=threading.Event, compare=False)


@dataclass(frozen=True)
class Reconcile:
    """Bring the history and the outputs folder into line (a client came; images may have been
    dropped in meanwhile). On the generation thread, between jobs, so no image is half-written."""
    outputs_dir: Path | None = None  # the client's outputs folder setting
    cancel: threading.Event = field(default_factory=threading.Event, compare=False)


@dataclass(frozen=True)
class _Ending:
    ended: str
    reason: str = ""


Report = Callable[[object], None]
STOPPED = "the sdtui server stopped"


@dataclass
class GenerationService:
    engine: Any  # Engine
    history: History
    report: Report
    _commands: deque = field(default_factory=deque)
    _wake: threading.Condition = field(default_factory=threading.Condition)
    _stopping: bool = False
    _closed: _Ending | None = None  # how a job submitted now ends (the service stopped or crashed)
    _current: Job | LoadModel | Unload | Reconcile | None = None
    _numbers: int = 0
    _ended: set = field(default_factory=set)  # the numbers of jobs whose JobDone was reported
    # Whether a client that draws live previews is connected, for the jobs of clients that draw none.
    previews_wanted: Callable[[], bool] = field(default_factory=lambda: lambda: False)

    # --- called from the interface thread ------------------------------------------------

    def load(self, options) -> None:
        """Load a model before any waiting job (a reload applies to the jobs that follow)."""
        self._push(LoadModel(options))
        self._report_queue()

    def submit(self, request: GenerationRequest, options=None, output: Path | None = None,
               adjust: Callable | None = None, outputs_dir: Path | None = None,
               previews_for_others: bool = False) -> int:
        with self._wake:  # the number is taken and the job queued under one lock
            self._numbers += 1
            job = Job(request, self._numbers, options=options, output=output, adjust=adjust, outputs_dir=outputs_dir,
                      previews_for_others=previews_for_others)
            closed = self._closed
            if closed is None:
                self._commands.append(job)
                self._wake.notify()
        if closed is not None:
            self._end(job, closed)
        self._report_queue()
        return job.number

    def reconcile(self, outputs_dir: Path | None = None) -> None:
        self._push(Reconcile(outputs_dir))

    def unload(self) -> None:
        """Unload the model on the worker thread (where mps work must stay), after what is queued."""
        self._push(Unload())

    def _push(self, command) -> None:
        with self._wake:
            self._commands.append(command)
            self._wake.notify()

    @property
    def current_job(self) -> int | None:
        """The number of the job running now, if one is."""
        current = self._current
        return current.number if isinstance(current, Job) else None

    def waiting_jobs(self) -> list[int]:
        with self._wake:
            return [c.number for c in self._commands if isinstance(c, Job)]

    def cancel_load(self) -> bool:
        """Stop the model load or download running now (its files are kept); False when none runs."""
        with self._wake:
            if not isinstance(self._current, LoadModel):
                return False
            self._current.cancel.set()
            return True

    def cancel_job(self, number: int) -> bool:
        """Cancel job ``number``: stop it if it runs, drop it if it waits. False when it has
        already ended (or never existed), and then no other job is touched."""
        with self._wake:
            if isinstance(self._current, Job) and self._current.number == number:
                self._current.cancel.set()
                return True
        dropped = self._take_waiting(lambda job: job.number == number)
        self._end_all(dropped, _Ending("dropped", "cancelled before it started"))
        return bool(dropped)

    def clear_queue(self) -> int:
        """Drop waiting jobs (not model loads); returns how many were dropped."""
        dropped = self._take_waiting(lambda job: True)
        self._end_all(dropped, _Ending("dropped", "the queue was cleared"))
        return len(dropped)

    def _take_waiting(self, which: Callable[[Job], bool]) -> list[Job]:
        with self._wake:
            jobs = [c for c in self._commands if isinstance(c, Job) and which(c)]
            for job in jobs:
                self._commands.remove(job)
        return jobs

    def _end_all(self, jobs: list[Job], ending: _Ending) -> None:
        for job in jobs:
            self._end(job, ending)
        if jobs:
            self._report_queue()

    def _end(self, job: Job, ending: _Ending, images: int = 0) -> None:
        """Report how ``job`` ended, once: whichever path comes second says nothing."""
        with self._wake:
            if job.number in self._ended:
                return
            self._ended.add(job.number)
        self.report(JobDone(job.number, images, ending.ended, ending.reason))

    def waiting(self) -> int:
        with self._wake:
            return sum(isinstance(c, Job) for c in self._commands)

    @property
    def busy(self) -> bool:
        return isinstance(self._current, Job)

    @property
    def loading(self) -> bool:
        """A model load (or download) runs now."""
        return isinstance(self._current, LoadModel)

    def stop(self, reason: str = STOPPED) -> None:
        """Cancel the running job or load and let ``serve()`` return; waiting jobs end as stopped
        (the running one too, once its step is done)."""
        with self._wake:
            self._stopping = True
            self._closed = self._closed or _Ending("stopped", reason)
            if self._current is not None:
                self._current.cancel.set()
            self._wake.notify()
        self._end_all(self._take_waiting(lambda job: True), self._closed)

    def end_running_job(self) -> None:
        """After ``stop()``, for a job whose step outlasted the wait for it: its clients hear now
        that it stopped (the generation thread, should it finish later, says nothing more)."""
        current = self._current
        if isinstance(current, Job) and self._closed is not None:
            self._end(current, self._closed)

    # --- the worker thread ---------------------------------------------------------------

    def serve(self) -> None:
        """Run commands until ``stop()``; a bug that escapes is reported, never silent, and every
        job still waiting then ends as failed."""
        try:
            self._serve()
        except Exception as error:
            log.exception("the generation thread stopped")
            message = f"{type(error).__name__}: {error}"
            self.report(ServiceCrashed(message))
            with self._wake:
                self._closed = self._closed or _Ending("failed", f"the server's generation thread stopped ({message})")
            self._end_all(self._take_waiting(lambda job: True), self._closed)

    def _serve(self) -> None:
        while True:
            with self._wake:
                while not self._commands and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                command = self._commands.popleft()
                self._current = command
            self._report_queue()
            try:
                if isinstance(command, LoadModel):
                    self._load(command)
                elif isinstance(command, Unload):
                    self.engine.unload(self.report)
                elif isinstance(command, Reconcile):
                    self._reconcile(command.outputs_dir)
                else:
                    self._run_to_its_end(command)
            finally:
                with self._wake:
                    self._current = None
                self._report_queue()

    def _reconcile(self, outputs_dir: Path | None) -> None:
        report = self.history.reconcile(outputs_dir)
        if report.changed:
            log.warning(report.message(), extra=FOR_THE_LOG_FILE)  # the client says it itself
            self.report(HistoryRepaired(report.message()))

    def _report_queue(self) -> None:
        self.report(QueueChanged(self.waiting(), self.busy, self.current_job, self.loading))

    def _load(self, command: LoadModel) -> _Ending | None:
        """Load the command's model (nothing happens when it is the loaded one); None when it is
        loaded, else how a job that needed it ends."""
        from tui.engine.device import DeviceError
        from tui.engine.models import ModelLoadError

        options = command.options
        self.engine.options = options
        try:
            self.engine.load(self.report, cancel=command.cancel, quiet_if_loaded=command.for_a_job)
            return None
        except (ModelLoadError, DeviceError) as error:
            log.error("%s", error)
            message = str(error) or f"model: loading {options.model} failed"
            ended = "refused" if isinstance(error, ModelLoadError) and model_is_unknown(options, error) else "failed"
        except Exception as error:  # any library failure while loading must leave the app usable
            log.exception("loading %s failed", options.model)
            message = f"model: loading {options.model} failed: {type(error).__name__}: {error}".splitlines()[0]
            ended = "failed"
        self.report(LoadFailed(options.model, message, self.engine.loaded_model))
        return _Ending(ended, message)

    def _run_to_its_end(self, job: Job) -> None:
        """Run ``job`` and report its one JobDone, also when a bug escapes the run."""
        images = 0
        try:
            ending, images = self._run(job)
        except Exception as error:
            self._end(job, _Ending("failed", f"{type(error).__name__}: {error}".splitlines()[0]), images)
            raise
        if ending.ended == "cancelled" and self._stopping:
            ending = self._closed or ending  # stop() cancelled it
        self._end(job, ending, images)

    def _run(self, job: Job) -> tuple[_Ending, int]:
        """Run ``job``: how it ended and how many images it saved."""
        if self._stopping:  # stop() came between taking the job and starting it
            return self._closed or _Ending("stopped", STOPPED), 0
        options = job.options if job.options is not None else self.engine.options
        problem = prompt_problem(job.request, getattr(options, "models_dir", ""),
                                 getattr(options, "allow_pickle", False))
        if problem:  # before any model is loaded for it
            log.error("job %d refused: %s", job.number, problem)
            self.report(Failed(job.request, problem))
            return _Ending("refused", problem), 0
        if job.options is not None:
            options = job.options
            if job.previews_for_others and not options.previews and self.previews_wanted():
                options = replace(options, previews=True)
            self.engine.options = options  # the settings travel with the job that uses them
            failure = self._load(LoadModel(options, job.cancel, for_a_job=True))
            if failure is not None:
                self.report(Failed(job.request, f"job {job.number} did not run: its model, {job.options.model}, "
                                                "could not load"))
                return failure, 0
        if not self.engine.loaded:
            message = "no model is loaded; switch model or use the demo model first"
            self.report(Failed(job.request, message))
            return _Ending("failed", message), 0
        return self._generate(job)

    def _generate(self, job: Job) -> tuple[_Ending, int]:
        request = job.adjust(self.engine, job.request) if job.adjust else job.request
        recorder = JobRecorder(self.history, output=job.output, outputs_dir=job.outputs_dir,
                               info=self.engine.describe())
        saved = 0
        ending = _Ending("done")

        def on_event(event: Event) -> None:
            nonlocal saved, ending
            self.report(event)
            if isinstance(event, Cancelled):
                ending = _Ending("cancelled", event.message)
            elif isinstance(event, Failed):
                ending = _Ending("failed", event.message)
            try:
                path = recorder(event)
            except OSError as error:
                if not isinstance(event, Finished):
                    log.error("recording the job in history failed: %s", error)
                    return
                message = save_failure_message(error)
                log.error(message)
                self.report(SaveFailed(message))
                if ending.ended == "done":
                    ending = _Ending("failed", message)
                return
            if path is not None:
                saved += 1
                self.report(ImageSaved.of(event, path))

        self.engine.generate(request, on_event, cancel=job.cancel)
        return ending, saved


def prompt_problem(request: GenerationRequest, models_dir: str | None, allow_pickle: bool = False) -> str | None:
    """Why the prompts cannot run as written, in one sentence, or None: a LoRA tag that names no
    file in the models folder's loras/, or one written wrong. Plain file reads, no model needed."""
    from tui.engine.networks import LORAS, NetworkError, extract_loras, find_network, network_files

    try:
        extract_loras(request.negative_prompt)  # its tags are ignored, but must read
        wanted = extract_loras(request.prompt)
        if wanted.loras:
            folder = Path(models_dir).expanduser() / LORAS if models_dir else None
            files = network_files(folder, LORAS, allow_pickle) if folder else []
            for use in wanted.loras:
                find_network(files, use.name, LORAS)
    except NetworkError as error:
        return str(error)
    return None


def model_is_unknown(options, error: Exception) -> bool:
    """Whether a model failed to load because nothing answers to its name (bad input): not a
    folder, file or Hub id; not on the Hub; or, with the Hub off, nowhere in the local cache."""
    from tui.engine.hub_files import cached_hub_file
    from tui.engine.models import ModelLoadError, NotOnHub, cached_snapshot, hub_offline, resolve_source

    try:
        source = resolve_source(options.model)
    except ModelLoadError:
        return True
    if source.kind not in ("hub", "hub_file"):
        return False
    if isinstance(error, NotOnHub):  # the Hub said so
        return True
    if source.kind == "hub_file":
        return hub_offline() and cached_hub_file(source.ref) is None
    return hub_offline() and cached_snapshot(source.ref, allow_pickle=True) is None
