"""Standing the server up: one way for ``sdtui serve``, the app's ``--no-server``, ``sdtui
generate --no-server`` and the tests, so they cannot drift apart.

``stand_up`` takes the socket, opens the history on config.toml's outputs folder and reconciles
it; the caller then serves in the foreground (``sdtui serve``) or on a thread of its own process
(``Host.start``). ``engine=`` takes any object with the Engine's interface: the tests hand in a
scripted one that reports a download at 40 % or an out-of-memory at step 3 without a pipeline.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tui.server.server import Server, ServerRunning
from tui.store.history import History


@dataclass
class Host:
    server: Server
    history: History
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def engine(self):
        return self.server.engine

    def serve(self) -> None:
        """Serve until stopped, then close the history."""
        try:
            self.server.serve_forever()
        finally:
            self.history.close()

    def start(self) -> "Host":
        """Serve on a thread of this process."""
        self.thread = threading.Thread(target=self.serve, name="sdtui-server", daemon=True)
        self.thread.start()
        return self

    def stop(self, reason: str = "", wait_s: float = 0.0) -> None:
        """Stop serving; with ``wait_s``, wait that long for the running step to end and be recorded."""
        self.server.stop(reason)
        thread = self.thread
        if wait_s and thread is not None and thread is not threading.current_thread():
            thread.join(wait_s)


def stand_up(places, engine: Any = None, keep_alive_s: float = 600.0, idle_exit_s: float = 1800.0,
             socket_of: Path | None = None) -> Host:
    """The server for ``places``' sdtui home, bound and with its history reconciled, not yet serving.
    Raises ServerRunning when one already answers there, PlaceError when the socket's folder is unsafe.
    ``socket_of``: a name whose own socket it listens on instead of the home's, where no client of
    the home looks (``sdtui generate --no-server``)."""
    if engine is None:
        from tui.engine import Engine, EngineOptions

        engine = Engine(EngineOptions(model="demo"))  # every job and load carries its own options
    history = History(places.history_db, configured_outputs(places))
    server = Server(socket_of or places.data_dir, history, engine, keep_alive_s=keep_alive_s,
                    idle_exit_s=idle_exit_s)
    try:
        server.bind()
    except BaseException:
        history.close()
        raise
    report = history.reconcile()
    if report.changed:
        server.history_notice = report.message()
    return Host(server, history)


def in_process(places, engine_factory: Callable[[], Any] | None = None) -> Callable[[], Host | None]:
    """What a client calls to run the server on a thread of its own process (``--no-server``, the
    tests): the started Host, or None when a server already runs for this home. Models stay
    loaded and the server never leaves on its own: it lives as long as its client."""
    def start() -> Host | None:
        try:
            host = stand_up(places, engine_factory() if engine_factory else None, keep_alive_s=-1, idle_exit_s=-1)
        except ServerRunning:
            return None
        return host.start()

    return start


def configured_outputs(places) -> Path:
    """The outputs folder config.toml names, else the default (a config the app would refuse
    is the app's to report; the server keeps to the default then)."""
    from tui.config import ConfigError, load_settings

    try:
        configured = load_settings(places.config_file).outputs_dir
    except (ConfigError, OSError):
        return places.outputs_dir
    return Path(configured).expanduser() if configured else places.outputs_dir
