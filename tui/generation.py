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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tui.engine.events import Event, Failed, Finished
from tui.engine.request import GenerationRequest
from tui.jobs import JobRecorder, save_failure_message
from tui.logs import FOR_THE_LOG_FILE
from tui.store.history import History

log = logging.getLogger("tui.generation")


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
class HistoryRepaired:
    message: str


@dataclass(frozen=True)
class QueueChanged:
    waiting: int
    running: bool
    running_job: int | None = None  # its number
    loading: bool = False  # a model load (or download) runs now


@dataclass(frozen=True)
class ImageSaved:
    finished: Finished
    path: Path


@dataclass(frozen=True)
class SaveFailed:
    message: str


@dataclass(frozen=True)
class LoadFailed:
    model: str
    message: str
    kept: str | None = None  # the model still loaded (the one before), if any


@dataclass(frozen=True)
class ServiceCrashed:
    message: str


@dataclass(frozen=True)
class JobDone:
    number: int
    images: int


Report = Callable[[object], None]


@dataclass
class GenerationService:
    engine: Any  # Engine
    history: History
    report: Report
    _commands: deque = field(default_factory=deque)
    _wake: threading.Condition = field(default_factory=threading.Condition)
    _stopping: bool = False
    _current: Job | LoadModel | Unload | Reconcile | None = None
    _numbers: int = 0

    # --- called from the interface thread ------------------------------------------------

    def load(self, options) -> None:
        """Load a model before any waiting job (a reload applies to the jobs that follow)."""
        self._push(LoadModel(options))
        self._report_queue()

    def submit(self, request: GenerationRequest, options=None, output: Path | None = None,
               adjust: Callable | None = None, outputs_dir: Path | None = None) -> int:
        with self._wake:  # the number is taken and the job queued under one lock
            self._numbers += 1
            self._commands.append(Job(request, self._numbers, options=options, output=output, adjust=adjust,
                                      outputs_dir=outputs_dir))
            self._wake.notify()
        self._report_queue()
        return self._numbers

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
            waiting = [c for c in self._commands if isinstance(c, Job) and c.number == number]
            for job in waiting:
                self._commands.remove(job)
        if waiting:
            self._report_queue()
        return bool(waiting)

    def clear_queue(self) -> int:
        """Drop waiting jobs (not model loads); returns how many were dropped."""
        with self._wake:
            jobs = [c for c in self._commands if isinstance(c, Job)]
            for job in jobs:
                self._commands.remove(job)
        self._report_queue()
        return len(jobs)

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

    def stop(self) -> None:
        """Cancel the running job or load and let ``serve()`` return; waiting jobs are dropped."""
        with self._wake:
            self._stopping = True
            self._commands.clear()
            if self._current is not None:
                self._current.cancel.set()
            self._wake.notify()

    # --- the worker thread ---------------------------------------------------------------

    def serve(self) -> None:
        """Run commands until ``stop()``; a bug that escapes is reported, never silent."""
        try:
            self._serve()
        except Exception as error:
            log.exception("the generation thread stopped")
            self.report(ServiceCrashed(f"{type(error).__name__}: {error}"))

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
                    self._run(command)
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

    def _load(self, command: LoadModel) -> bool:
        """Load the command's model (nothing happens when it is the loaded one); False if it failed."""
        from tui.engine.device import DeviceError
        from tui.engine.models import ModelLoadError

        options = command.options
        self.engine.options = options
        try:
            self.engine.load(self.report, cancel=command.cancel, quiet_if_loaded=command.for_a_job)
            return True
        except (ModelLoadError, DeviceError) as error:
            log.error("%s", error)
            self.report(LoadFailed(options.model, str(error), self.engine.loaded_model))
        except Exception as error:  # any library failure while loading must leave the app usable
            log.exception("loading %s failed", options.model)
            self.report(LoadFailed(options.model, f"model: loading {options.model} failed: "
                                                  f"{type(error).__name__}: {error}".splitlines()[0],
                                   self.engine.loaded_model))
        return False

    def _run(self, job: Job) -> None:
        if self._stopping:  # stop() came between taking the job and starting it
            return
        if job.options is not None:
            self.engine.options = job.options  # the settings travel with the job that uses them
            if not self._load(LoadModel(job.options, job.cancel, for_a_job=True)):
                self.report(Failed(job.request, f"job {job.number} did not run: its model, {job.options.model}, "
                                                "could not load"))
                self.report(JobDone(job.number, 0))
                return
        if not self.engine.loaded:
            self.report(Failed(job.request, "no model is loaded; switch model or use the demo model first"))
            return
        request = job.adjust(self.engine, job.request) if job.adjust else job.request
        recorder = JobRecorder(self.history, output=job.output, outputs_dir=job.outputs_dir,
                               info=self.engine.describe())
        saved = 0

        def on_event(event: Event) -> None:
            nonlocal saved
            self.report(event)
            if isinstance(event, Finished):
                try:
                    path = recorder(event)
                except OSError as error:
                    message = save_failure_message(error)
                    log.error(message)
                    self.report(SaveFailed(message))
                    return
                saved += 1
                self.report(ImageSaved(event, path))
            else:
                try:
                    recorder(event)
                except OSError as error:
                    log.error("recording the job in history failed: %s", error)

        self.engine.generate(request, on_event, cancel=job.cancel)
        self.report(JobDone(job.number, saved))
