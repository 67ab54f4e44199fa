"""The server: one engine, one queue, one history writer; any number of clients of the same user.

The generation thread runs jobs as the in-app queue does; every event it reports goes to
every client, tagged with the job it belongs to, so two clients see the same progress and a
client that comes back sees the job where it is. A client going away changes nothing for the
jobs. The model is unloaded after ``keep_alive`` seconds with nothing to do (0: at once, a
negative value: never), and the server leaves after ``idle_exit`` seconds with no client and
nothing to do.
"""

from __future__ import annotations

import logging
import os
import queue
import selectors
import socket
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tui import __version__
from tui.logs import FOR_THE_LOG_FILE, SERVER_LIFE, screen_line
from tui.wire.events import ClientsChanged, JobDone, Queued, ServerState, encode_event, encode_state
from tui.wire.protocol import PROTOCOL_VERSION, FrameReader, ProtocolError, encode_frame, mismatch
from tui.server.awake import KeepAwake
from tui.wire.place import peer_uid, pid_path, private_dir, runtime_dir, socket_path

log = logging.getLogger("tui.server")
MOMENTARY_CLIENTS = ("status", "stop")  # they ask one thing and leave: nobody needs to hear of them
TICK_S = 0.5  # how often idle time is looked at; every wait in the server is bounded by it
SEND_TIMEOUT_S = 5.0  # a client that does not read for this long is dropped, never waited for
OUTBOX_LIMIT = 512  # messages waiting for one client before it counts as gone


class ServerRunning(RuntimeError):
    """Another server already listens for this sdtui home."""


@dataclass
class _Client:
    """One connection. Its messages go out from its own thread, through a bounded queue, so the
    generation thread never waits on a socket: a client that stops reading (a suspended
    terminal) first loses previews, then its connection, never slows the job."""
    sock: socket.socket
    name: str = "?"
    alive: bool = True
    wants_logs: bool = False  # a client in another process shows the server's log lines
    reader: FrameReader = field(default_factory=FrameReader)
    outbox: queue.Queue = field(default_factory=lambda: queue.Queue(maxsize=OUTBOX_LIMIT))
    sender: threading.Thread | None = None

    def start(self) -> None:
        self.sender = threading.Thread(target=self._send_loop, name="sdtui-client-out", daemon=True)
        self.sender.start()

    def finish(self, timeout: float = 1.0) -> None:
        """Send what is queued (within ``timeout``), then close."""
        try:
            self.outbox.put(None, timeout=timeout)
        except queue.Full:
            pass
        if self.sender is not None and self.sender is not threading.current_thread():
            self.sender.join(timeout)
        self.close()

    def send(self, message: dict[str, Any], payload: bytes = b"") -> bool:
        if not self.alive:
            return False
        if payload and self.outbox.qsize() > OUTBOX_LIMIT // 2:
            return True  # behind: a preview can be skipped, the step line still goes
        try:
            self.outbox.put_nowait(encode_frame(message, payload))
            return True
        except queue.Full:
            log.info("a %s client stopped reading; dropping it", self.name)
            self.close()
            return False

    def _send_loop(self) -> None:
        while self.alive:
            try:
                frame = self.outbox.get(timeout=TICK_S)
            except queue.Empty:
                continue
            if frame is None:
                return
            try:
                self.sock.sendall(frame)
            except OSError:
                self.close()

    def close(self) -> None:
        self.alive = False
        _close(self.sock)

    def frames(self, stop: threading.Event):
        """Messages from the client until it closes or the server stops (each wait bounded)."""
        while not stop.is_set() and self.alive:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            yield from self.reader.feed(data)


class Server:
    def __init__(self, data_dir: Path, history, engine, keep_alive_s: float = 600.0, idle_exit_s: float = 1800.0):
        from tui.server.queue import GenerationService

        self.data_dir = Path(data_dir)
        self.history = history
        self.engine = engine
        self.keep_alive_s = keep_alive_s
        self.idle_exit_s = idle_exit_s
        self.service = GenerationService(engine, history, self._report, previews_wanted=self._app_connected)
        self.clients: list[_Client] = []
        self._clients_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_read, self._wake_write = socket.socketpair()  # stop() wakes the accept loop at once
        self._last_busy = time.monotonic()
        self._unloaded_for_idle = False
        self._listener: socket.socket | None = None
        self.started_at = time.time()
        self.finished_jobs = 0
        # The running job's Started, latest preview and latest Step, for a client that comes in during
        # it and for `sdtui status`; all of one job, the one ``_running_job`` names.
        self._running: dict[str, tuple[dict[str, Any], bytes]] = {}
        self._running_job: int | None = None
        self.stop_reason = ""  # why the server stops, once it does: told to its clients and its log
        self._clients_closed = False  # the shut-down has taken the clients to say goodbye to
        self._log_handler = _LogBroadcast(self)
        self.history_notice: str | None = None  # what reconciling the history changed, told to the first client
        self.awake = KeepAwake.for_this_machine(sys.platform, os.getpid())
        self.queue_emptied_at: float | None = None  # wall time the last run of jobs ended

    # --- lifetime -----------------------------------------------------------------------

    def bind(self) -> None:
        """Take the socket: replace a stale one (its server is gone); refuse if a server answers."""
        private_dir(runtime_dir(self.data_dir))
        path = socket_path(self.data_dir)
        if path.exists():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(2.0)
            try:
                probe.connect(str(path))
                raise ServerRunning(f"server: one is already running for {self.data_dir} ({path})")
            except (ConnectionRefusedError, FileNotFoundError):
                log.info("removing a stale socket %s (its server is gone)", path)
                path.unlink(missing_ok=True)
            finally:
                probe.close()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_mask = os.umask(0o177)  # the socket is made 0600, with no moment of being open to others
        try:
            listener.bind(str(path))
        finally:
            os.umask(old_mask)
        listener.listen(16)
        listener.setblocking(False)
        self._listener = listener
        pid_path(self.data_dir).write_text(str(os.getpid()))
        log.info("sdtui %s server %d listening on %s", __version__, os.getpid(), path, extra=SERVER_LIFE)

    def serve_forever(self) -> None:
        if self._listener is None:
            self.bind()
        worker = threading.Thread(target=self.service.serve, name="sdtui-generation", daemon=True)
        worker.start()
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ)
        selector.register(self._wake_read, selectors.EVENT_READ)
        logging.getLogger().addHandler(self._log_handler)
        try:
            while not self._stop.is_set():
                for key, _mask in selector.select(timeout=TICK_S):
                    if key.fileobj is self._listener:
                        self._accept()
                self._tick()
        finally:
            selector.close()
            self._shut_down(worker)
            logging.getLogger().removeHandler(self._log_handler)

    def stop(self, reason: str = "") -> None:
        """Stop serving; ``reason`` (the first one given) is said to the clients and in the log."""
        self.stop_reason = self.stop_reason or reason
        self._stop.set()
        try:
            self._wake_write.send(b"x")
        except OSError:
            pass  # already closed: the loop has ended

    def _shut_down(self, worker: threading.Thread) -> None:
        """Every job ends and its clients hear how (JobDone), then they hear goodbye and are closed."""
        said = "the sdtui server stopped" + (f" ({self.stop_reason})" if self.stop_reason else "")
        log.info("server %d stopping%s", os.getpid(), f": {self.stop_reason}" if self.stop_reason else "",
                 extra=SERVER_LIFE)
        self.awake.stop()
        self.service.stop(said)
        worker.join(timeout=10)
        self.service.end_running_job()  # a step that outlasted the wait
        with self._clients_lock:
            clients, self.clients = list(self.clients), []
            self._clients_closed = True
        for client in clients:
            client.send({"type": "bye", "message": said})
            client.finish()
        if self._listener is not None:
            self._listener.close()
        for path in (socket_path(self.data_dir), pid_path(self.data_dir)):
            path.unlink(missing_ok=True)
        self._wake_read.close()
        self._wake_write.close()

    def _tick(self) -> None:
        """Unload an idle model after keep_alive; leave after idle_exit with no client."""
        now = time.monotonic()
        busy = bool(self.service.busy or self.service.loading or self.service.waiting())
        self.awake.update(busy)
        if busy:
            self._last_busy, self._unloaded_for_idle = now, False
            return
        idle = now - self._last_busy
        if self.keep_alive_s >= 0 and idle >= self.keep_alive_s and self.engine.loaded \
                and not self._unloaded_for_idle:
            log.info("unloading %s after %.0f s with nothing to do (keep_alive %g s)", self.engine.model_label,
                     idle, self.keep_alive_s)
            self._unloaded_for_idle = True
            self.service.unload()
        with self._clients_lock:
            connected = bool(self.clients)
        if not connected and self.idle_exit_s >= 0 and idle >= self.idle_exit_s:
            self.stop(f"{idle:.0f} s with no client and nothing to do")

    # --- clients ------------------------------------------------------------------------

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(True)
        sock.settimeout(SEND_TIMEOUT_S)
        client = _Client(sock)
        client.start()
        uid = peer_uid(sock)
        if uid is not None and uid != os.getuid():
            log.warning("refused a connection from user %d", uid)
            client.send({"type": "refused", "message": "server: this sdtui server belongs to another user"})
            threading.Thread(target=client.finish, daemon=True).start()
            return
        threading.Thread(target=self._talk, args=(client,), name="sdtui-client", daemon=True).start()

    def _talk(self, client: _Client) -> None:
        try:
            frames = client.frames(self._stop)
            first = next(frames, None)
            if first is None:
                return
            message, _ = first
            problem = "the first message must be hello" if message.get("type") != "hello" else mismatch(message)
            if problem:
                client.send({"type": "refused", "message": problem})
                return
            client.name = str(message.get("client", "?"))
            client.wants_logs = bool(message.get("logs"))
            notice, self.history_notice = self.history_notice, None
            client.send(encode_state(replace(self.state(), history_notice=notice), "welcome"))
            with self._clients_lock:
                if self._clients_closed:  # came as the server stopped
                    client.send({"type": "bye", "message": "the sdtui server stopped"})
                    return
                self.clients.append(client)
                for kind in ("Started", "Preview", "Step"):  # the job where it is now
                    if kind in self._running:
                        client.send(*self._running[kind])
            self._clients_changed(came=client)
            for message, _ in frames:
                reply = self._handle(message, client)
                if reply is not None:
                    client.send(reply)
        except (ProtocolError, OSError, ValueError, TypeError) as error:
            log.info("client %r went away: %s", client.name, error)
        finally:
            with self._clients_lock:
                # A stopping server's clients stay until the shut-down has told them how their jobs ended.
                left_for_the_shut_down = self._stop.is_set() and not self._clients_closed and client in self.clients
                if not left_for_the_shut_down and client in self.clients:
                    self.clients.remove(client)
            if not left_for_the_shut_down:
                client.finish()
                self._clients_changed(left=client)

    def _handle(self, message: dict[str, Any], client: _Client) -> dict[str, Any] | None:
        kind = message.get("type")
        if kind == "generate":
            return self._generate(message, client)
        if kind == "cancel":
            job = message.get("job")
            if job == "load":  # the model load or download running now
                return {"type": "cancel", "job": job, "ok": self.service.cancel_load()}
            ok = isinstance(job, int) and self.service.cancel_job(job)
            return {"type": "cancel", "job": job, "ok": bool(ok)}
        if kind == "reconcile":  # a client came: adopt images dropped into the outputs folder meanwhile
            folder = message.get("outputs_dir")
            self.service.reconcile(Path(folder) if folder else None)
            return None
        if kind == "clear_queue":
            return {"type": "cleared", "count": self.service.clear_queue()}
        if kind == "load":  # load a model now, before any job asks for it (a client's model switch)
            options = _engine_options(message)
            self.service.load(options)
            return {"type": "loading", "model": options.model}
        if kind == "status":
            return encode_state(self.state(), "status")
        if kind == "stop":
            self.stop("`sdtui stop` was run")
            return {"type": "stopping"}
        return {"type": "error", "message": f"server: unknown message {kind!r}"}

    def _generate(self, message: dict[str, Any], client: _Client) -> dict[str, Any]:
        from tui.engine.request import InvalidRequest, validate_request

        ref = message.get("ref")  # the client's own tag, so it can tell which reply is whose
        try:
            request = validate_request(message.get("request") or {})
        except InvalidRequest as error:
            return {"type": "error", "message": str(error), "ref": ref}
        options = _engine_options(message)
        output = Path(message["output"]) if message.get("output") else None
        outputs_dir = Path(message["outputs_dir"]) if message.get("outputs_dir") else None
        chosen = set(message.get("chosen") or ())
        adjust = _family_adjuster(chosen, self._report_notice) if message.get("family_defaults") else None
        number = self.service.submit(request, options=options, output=output, adjust=adjust, outputs_dir=outputs_dir,
                                     previews_for_others=client.name != "app")
        log.info("job %d queued: %s", number, request.prompt[:60], extra=FOR_THE_LOG_FILE)
        self._tell_others(client, *encode_event(Queued(request, client.name), number))
        return {"type": "queued", "job": number, "ref": ref, "request": request.to_dict()}

    def _tell_others(self, sender: _Client, message: dict[str, Any], payload: bytes = b"") -> None:
        with self._clients_lock:
            others = [c for c in self.clients if c is not sender]
        for other in others:
            other.send(message, payload)

    def _clients_changed(self, came: _Client | None = None, left: _Client | None = None) -> None:
        """Tell the other clients who is connected now (a second app shares this queue, say)."""
        changed = came or left
        if changed is None or changed.name in MOMENTARY_CLIENTS:
            return
        with self._clients_lock:
            if self._clients_closed:
                return
            names = tuple(c.name for c in self.clients if c.name not in MOMENTARY_CLIENTS)
            others = [c for c in self.clients if c is not changed]
        event = ClientsChanged(names, came.name if came else "", left.name if left else "")
        message, payload = encode_event(event, None)
        for client in others:
            client.send(message, payload)

    def _app_connected(self) -> bool:
        with self._clients_lock:
            return any(c.name == "app" for c in self.clients)

    # --- events to every client ------------------------------------------------------------

    def _report(self, event: Any) -> None:
        if isinstance(event, JobDone):
            if event.ended not in ("dropped", "stopped"):  # it ran
                self.finished_jobs += 1
            self._last_busy = time.monotonic()
            if not self.service.waiting():
                self.queue_emptied_at = time.time()
        job = event.number if isinstance(event, JobDone) else self.service.current_job
        message, payload = encode_event(event, job)
        with self._clients_lock:
            self._keep_running_job(message, payload, job)
            clients = list(self.clients)
        for client in clients:
            client.send(message, payload)

    def _keep_running_job(self, message: dict[str, Any], payload: bytes, job: int | None) -> None:
        """Keep the running job's latest Started, Step and preview; forget them once it ends."""
        kind = message["event"]
        if kind in ("Started", "Step"):
            if job != self._running_job:
                self._running.clear()
                self._running_job = job
            self._running[kind] = (message, payload)
            if payload:
                self._running["Preview"] = (message, payload)
        elif kind in ("JobDone", "Cancelled", "Failed") and job == self._running_job:
            self._running.clear()
            self._running_job = None

    def running_progress(self) -> dict[str, Any]:
        """The running job's prompt and where it is (step n of N, image i of I), for `sdtui status`."""
        with self._clients_lock:
            started = self._running.get("Started", (None,))[0]
            step = self._running.get("Step", (None,))[0]
        if started is None:
            return {}
        progress = {"running_prompt": started["request"]["prompt"], "running_images": started.get("images", 1)}
        if step is not None:
            progress.update(running_step=(step["step"], step["total"]), running_image=step["image_index"] + 1)
        return progress

    def _report_notice(self, text: str) -> None:
        from tui.engine.events import Notice

        self._report(Notice(text))

    def state(self) -> ServerState:
        from tui.engine.memory import sample_memory

        memory = sample_memory("cpu")  # the process and system; the device is asked on its own thread only
        engine = self.engine
        loaded = engine.loaded
        return ServerState(
            protocol=PROTOCOL_VERSION, sdtui=__version__, pid=os.getpid(), since=self.started_at,
            model=engine.model_label if loaded else None, device=engine.device or None, dtype=engine.dtype or None,
            loaded=engine.loaded_model if loaded else None, family_info=engine.family_info if loaded else None,
            slicing=engine.attention_slicing_active if loaded else None, loading=self.service.loading,
            running=self.service.current_job, waiting=tuple(self.service.waiting_jobs()),
            finished_jobs=self.finished_jobs, clients=len(self.clients), keep_alive_s=self.keep_alive_s,
            queue_emptied_at=self.queue_emptied_at, keeping_awake=self.awake.process is not None,
            idle_s=round(time.monotonic() - self._last_busy, 1), rss=memory.process_rss, **self.running_progress())


class _LogBroadcast(logging.Handler):
    """The server's log lines, to every client that shows them (the app's live log explains
    what the engine decided, though the engine now runs in another process)."""

    def __init__(self, server: "Server"):
        super().__init__(logging.INFO)
        self.server = server
        self._inside = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._inside, "busy", False):
            return
        self._inside.busy = True  # sending may itself log (a client dropped): never recursively
        try:
            line = screen_line(record)
            if line is None:
                return
            # ``job``: the job running as it was logged, so a client can show the lines of its own jobs.
            message = {"type": "log", "level": record.levelname.lower(), "text": line, "created": record.created,
                       "logger": record.name, "job": self.server.service.current_job}
            with self.server._clients_lock:
                clients = [c for c in self.server.clients if c.wants_logs]
            for client in clients:
                client.send(message)
        except Exception:  # a log line must never break the job that logged it
            pass
        finally:
            self._inside.busy = False


def _engine_options(message: dict[str, Any]):
    """The engine options a client's message carries (only the keys a client may set)."""
    from tui.engine.options import EngineOptions, option_names

    raw = message.get("options") or {}
    return EngineOptions(**{key: raw[key] for key in option_names() if key in raw})


def _family_adjuster(chosen: set[str], notice):
    """The family's defaults, once the job's model is loaded, for what the user did not set."""
    def adjust(engine, request):
        from tui.engine.families import with_family_defaults

        if engine.family_info is None:
            return request
        request, said = with_family_defaults(request, engine.family_info, chosen)
        if said:
            notice(said)
        return request

    return adjust


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
