"""Textual messages: one class per thing the sdtui server (or logging) tells the interface.

The Session's reader thread posts them (``post_message`` is thread-safe); the screens' handlers
own every change to the widgets. Step messages coalesce: a newer step replaces a waiting
older one, unless that would drop a preview, so a fast GPU cannot flood the interface.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.message import Message

from tui.engine.events import Loaded, Step
from tui.engine.memory import MemorySample
from tui.engine.request import GenerationRequest


class LogLine(Message):
    """A line for the live log, from Python logging on any thread, or from the server's log."""

    def __init__(self, level: str, text: str, created: float) -> None:
        super().__init__()
        self.level = level
        self.text = text
        self.created = created


# --- the connection --------------------------------------------------------------------


class Connected(Message):
    """The server answered; ``state`` is its welcome (model, running job, queue)."""

    def __init__(self, state: dict[str, Any], started: bool) -> None:
        super().__init__()
        self.state = state
        self.started = started  # this client started the server


class HistoryRepaired(Message):
    """Reconciling the history with the outputs folder changed something; ``message`` says what."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message


class ServerLost(Message):
    """The server went away (killed, crashed) or could not be reached or started."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message


# --- jobs ------------------------------------------------------------------------------


class JobQueued(Message):
    def __init__(self, job: int, request: GenerationRequest, what: str) -> None:
        super().__init__()
        self.job = job
        self.request = request
        self.what = what  # why it was queued ("reroll"), or ""


class JobRefused(Message):
    """The server refused a job (its request broke a rule); ``message`` names the field."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message


class JobStarted(Message):
    def __init__(self, job: int | None, request: GenerationRequest, images: int, steps: int) -> None:
        super().__init__()
        self.job = job
        self.request = request
        self.images = images
        self.steps = steps


class StepMade(Message):
    def __init__(self, job: int | None, step: Step) -> None:
        super().__init__()
        self.job = job
        self.step = step

    def can_replace(self, message: Message) -> bool:
        if not isinstance(message, StepMade):
            return False
        return message.step.preview is not None or self.step.preview is None


class ImageMade(Message):
    """An image is finished; it is being saved (ImageReady follows)."""

    def __init__(self, job: int | None, image: Any, seed: int, request: GenerationRequest) -> None:
        super().__init__()
        self.job = job
        self.image = image
        self.seed = seed
        self.request = request


class ImageReady(Message):
    """An image is saved (``path``) and recorded; ``image`` as ImageMade brought it, or read back
    from the file (for a client that came in between)."""

    def __init__(self, job: int | None, image: Any, path: Path, seed: int, request: GenerationRequest) -> None:
        super().__init__()
        self.job = job
        self.image = image
        self.path = path
        self.seed = seed
        self.request = request


class ImageNotSaved(Message):
    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message


class JobCancelled(Message):
    def __init__(self, job: int | None, completed: int) -> None:
        super().__init__()
        self.job = job
        self.completed = completed


class JobFailed(Message):
    def __init__(self, job: int | None, message: str) -> None:
        super().__init__()
        self.job = job
        self.message = message


class JobEnded(Message):
    """A job is over, whatever happened to it; ``images`` were saved. ``ended``: done, failed,
    refused, cancelled, dropped (it never started) or stopped (the server stopped)."""

    def __init__(self, job: int | None, images: int, ended: str = "done", reason: str = "") -> None:
        super().__init__()
        self.job = job
        self.images = images
        self.ended = ended
        self.reason = reason

    @property
    def ran(self) -> bool:
        """Whether the job got as far as running (a dropped job waited, then was taken off the queue)."""
        return self.ended != "dropped"


class QueueUpdated(Message):
    def __init__(self, waiting: int, running: int | None, loading: bool) -> None:
        super().__init__()
        self.waiting = waiting
        self.running = running
        self.loading = loading

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, QueueUpdated)


class QueueCleared(Message):
    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count  # waiting jobs dropped


class EngineNotice(Message):
    def __init__(self, message: str, level: str) -> None:
        super().__init__()
        self.message = message
        self.level = level


# --- models ----------------------------------------------------------------------------


class ModelLoading(Message):
    def __init__(self, model: str) -> None:
        super().__init__()
        self.model = model


class DownloadMoved(Message):
    def __init__(self, model: str, done_bytes: int, total_bytes: int | None) -> None:
        super().__init__()
        self.model = model
        self.done_bytes = done_bytes
        self.total_bytes = total_bytes

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DownloadMoved)


class ModelReady(Message):
    def __init__(self, loaded: Loaded) -> None:
        super().__init__()
        self.loaded = loaded


class ModelFailed(Message):
    def __init__(self, model: str, message: str, kept: str | None) -> None:
        super().__init__()
        self.model = model
        self.message = message
        self.kept = kept  # the model still loaded, if any


class ModelUnloaded(Message):
    def __init__(self, model: str, memory: MemorySample | None) -> None:
        super().__init__()
        self.model = model
        self.memory = memory
