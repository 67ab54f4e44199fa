"""Textual messages: one class per thing the sdtui server (or logging) tells the interface.

Each event of the wire (tui/wire/events.py) has a message of the same name carrying it as
``event``, with ``job``, the job it belongs to; message_for maps one to the other. The Session
posts them from the UI thread, in the order the server sent them, after taking what they say
into its own state, to the main screen (MainScreen.take), whose job view shows a job as it
goes and whose header, dialogs and settings follow the rest. Step messages
coalesce: a newer step replaces a waiting older one, unless that would drop a preview, so a
fast GPU cannot flood the interface.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:  # the wire loads with the connection, after the first frame
    from tui.wire import events as wire



class LogLine(Message):
    """A line for the live log, from Python logging on any thread, or from the server's log."""

    def __init__(self, level: str, text: str, created: float) -> None:
        super().__init__()
        self.level = level
        self.text = text
        self.created = created


# --- intents: what a screen asks the app for ----------------------------------------------


class QueueRequest(Message):
    """Queue ``request`` (``what``: why, for the log); ``said``: the toast once it is sent."""

    def __init__(self, request, what: str, said: str, timeout: float = 3) -> None:
        super().__init__()
        self.request, self.what, self.said, self.timeout = request, what, said, timeout


class LoadIntoPrompt(Message):
    """Put ``request``'s prompt and settings into the main screen's fields."""

    def __init__(self, request, said: str) -> None:
        super().__init__()
        self.request, self.said = request, said


class OpenViewer(Message):
    """Show ``entry`` (a HistoryEntry) full size in the viewer."""

    def __init__(self, entry) -> None:
        super().__init__()
        self.entry = entry


# --- the connection --------------------------------------------------------------------


class Arrived(Message):
    """Something from the server waits in the Session's inbox (one of these stands for any number)."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, Arrived)


class Connected(Message):
    """The server answered; ``state`` is its welcome (a ServerState: model, running job, queue)."""

    def __init__(self, state: wire.ServerState, started: bool) -> None:
        super().__init__()
        self.state = state
        self.started = started  # this client started the server


class ServerLost(Message):
    """The server went away (killed, crashed) or could not be reached or started."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message


class Refused(Message):
    """The server refused a job (its request broke a rule); ``message`` names the field."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message


class GridFinished(Message):
    """Every cell's job of an X/Y grid has ended: its contact sheet can be made."""

    def __init__(self, grid) -> None:
        super().__init__()
        self.grid = grid  # a PendingGrid


class QueueCleared(Message):
    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count  # waiting jobs dropped


# --- the server's events -----------------------------------------------------------------


class ServerEvent(Message):
    """An event from the server; ``job``: the job it belongs to, None for a model's events."""

    def __init__(self, event: Any, job: int | None = None) -> None:
        super().__init__()
        self.event = event
        self.job = job


class LoadStarted(ServerEvent):
    pass


class DownloadProgress(ServerEvent):
    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DownloadProgress)


class Loaded(ServerEvent):
    """A model is loaded; ``defaults``: the family's settings the Session took after a switch to it;
    ``adjusted``: settings the Session changed because the family cannot use them (its sampler),
    and ``notes``: the log's sentences for those and for settings the family ignores."""

    def __init__(self, event: wire.Loaded, job: int | None = None, defaults: dict | None = None,
                 adjusted: dict | None = None, notes: tuple[str, ...] = ()) -> None:
        super().__init__(event, job)
        self.defaults = defaults or {}
        self.adjusted, self.notes = adjusted or {}, notes


class Unloaded(ServerEvent):
    pass


class LoadFailed(ServerEvent):
    pass


class Notice(ServerEvent):
    pass


class Queued(ServerEvent):
    """A job is queued: this client's (``what``: why it queued it, "reroll", or "") or another's
    (``what``: "by generate")."""

    def __init__(self, event: wire.Queued, job: int | None = None, what: str = "") -> None:
        super().__init__(event, job)
        self.what = what


class QueueChanged(ServerEvent):
    def can_replace(self, message: Message) -> bool:
        return isinstance(message, QueueChanged)


class Started(ServerEvent):
    pass


class Step(ServerEvent):
    def can_replace(self, message: Message) -> bool:
        if not isinstance(message, Step):
            return False
        return message.event.preview is not None or self.event.preview is None


class Finished(ServerEvent):
    """An image is finished; it is being saved (ImageSaved follows)."""


class ImageSaved(ServerEvent):
    """An image is saved and recorded; ``image``: as Finished brought it, or read back from the
    file (for a client that came in between)."""

    def __init__(self, event: wire.ImageSaved, job: int | None = None, image: Any = None) -> None:
        super().__init__(event, job)
        self.image = image

    @property
    def path(self) -> Path:
        return Path(self.event.path)


class SaveFailed(ServerEvent):
    pass


class Cancelled(ServerEvent):
    pass


class Failed(ServerEvent):
    pass


class JobDone(ServerEvent):
    """A job is over, whatever happened to it (``event.ended``: done, failed, refused, cancelled,
    dropped or stopped)."""


class HistoryRepaired(ServerEvent):
    """Reconciling the history with the outputs folder changed something; the event says what."""


class ServiceCrashed(ServerEvent):
    pass


class ClientsChanged(ServerEvent):
    """Another client came or went (another app shares this server's queue)."""


@functools.cache
def message_for(event: type) -> type[ServerEvent]:
    """The message of the wire's ``event`` class: the one of the same name."""
    from tui.wire.events import EVENTS

    if EVENTS.get(event.__name__) is not event:
        raise KeyError(f"{event.__name__} is not an event of the wire")
    return globals()[event.__name__]
