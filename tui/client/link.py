"""The app's connection to the server, on its own thread.

It connects (standing the server up in this process first when given a host, else starting
``sdtui serve`` in the background when none runs), reads every frame, and hands each on as one
typed arrival, in the order the server sent them, to ``deliver``: the Session's inbox, which the
UI thread drains. Nothing here touches the Session's state or the widgets.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from tui.engine.request import GenerationRequest
from tui.wire.events import ServerState, decode_event
from tui.wire.protocol import ProtocolError

log = logging.getLogger("tui.client.link")
READ_TICK_S = 0.5  # every wait of the reader thread is bounded by this


@dataclass(frozen=True)
class Linked:
    state: ServerState  # the server's welcome
    started: bool  # this client started the server


@dataclass(frozen=True)
class Lost:
    message: str


@dataclass(frozen=True)
class Event:
    event: Any  # one of tui/wire/events.py's EVENTS
    job: int | None


@dataclass(frozen=True)
class QueuedReply:
    """The answer to this client's generate: its job's number."""
    job: int
    request: GenerationRequest
    ref: Any


@dataclass(frozen=True)
class RefusedReply:
    message: str
    ref: Any


@dataclass(frozen=True)
class ClearedReply:
    count: int


@dataclass(frozen=True)
class ServerLog:
    level: str
    text: str
    created: float


class ServerLink:
    def __init__(self, places, host: Callable[[], Any] | None, deliver: Callable[[Any], None]) -> None:
        self.places = places
        self.host = host
        self.hosted = None  # the server this process stood up, if any
        self.deliver = deliver
        self.connection = None
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sdtui-link", daemon=True)
        self._thread.start()

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def close(self, wait_s: float = 0.0) -> None:
        """Leave; a server stood up in this process stops (waiting ``wait_s`` for its running step)."""
        self._closing.set()
        if self.connection is not None:
            self.connection.close()
        if self.hosted is not None:
            self.hosted.stop(wait_s=wait_s)

    def send(self, message: dict[str, Any]) -> str | None:
        """Send ``message``; None, or one sentence saying why it could not go."""
        from tui.client.connection import ServerGone

        if self.connection is None:
            return "the sdtui server is not connected yet" if not self.closing else "sdtui is stopping"
        try:
            self.connection.send(message)
        except ServerGone as error:
            return str(error)
        return None

    def _run(self) -> None:
        from tui.client.connection import ServerGone, ServerRefused

        try:
            connection, started = self._connect()
        except (ServerGone, ServerRefused, OSError) as error:
            if not self.closing:
                self.deliver(Lost(str(error)))
            return
        self.connection = connection
        self.deliver(Linked(connection.welcome, started))
        try:
            while not self.closing:
                frame = connection.receive(timeout=READ_TICK_S)
                if frame is not None:
                    arrival = arrival_of(*frame)
                    if arrival is not None:
                        self.deliver(arrival)
        except (ServerGone, ProtocolError) as error:
            if not self.closing:
                self.deliver(Lost(str(error)))
        finally:
            self.connection = None
            connection.close()

    def _connect(self):
        """The connection, and whether this client started the server."""
        from tui.client.connection import connect, connect_or_start

        if self.host is not None:
            self.hosted = self.host()  # None when a server already runs for this home
            return connect(self.places.data_dir, "app"), self.hosted is not None
        started = []
        log_file = self.places.logs_dir / "server.log"
        connection = connect_or_start(self.places.data_dir, "app", log_file, logs=True,
                                      on_start=lambda: started.append(log_file))
        if started:
            log.info("started the sdtui server in the background (its log: %s)", log_file)
        return connection, bool(started)


def arrival_of(frame: dict[str, Any], payload: bytes):
    """What one frame from the server says, typed; None for replies nobody waits on."""
    from tui.client.connection import ServerGone

    kind = frame.get("type")
    if kind == "event":
        return Event(decode_event(frame, payload), frame.get("job"))
    if kind == "log":
        return ServerLog(str(frame.get("level") or "info"), str(frame.get("text") or ""),
                         float(frame.get("created") or time.time()))
    if kind == "queued":
        return QueuedReply(frame["job"], GenerationRequest(**frame["request"]), frame.get("ref"))
    if kind == "error":
        return RefusedReply(str(frame.get("message")), frame.get("ref"))
    if kind == "cleared":
        return ClearedReply(int(frame.get("count") or 0))
    if kind == "bye":
        raise ServerGone(str(frame.get("message") or "the sdtui server stopped"))
    return None
