"""Reaching the server: connect, or start one in the background and connect, then talk."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tui.wire.events import ServerState, decode_state
from tui.wire.protocol import FrameReader, ProtocolError, encode_frame, hello, mismatch
from tui.wire.place import pid_path, socket_path

START_WAIT_S = 60.0  # a cold server imports torch before it listens


class NoServer(ConnectionError):
    """No server listens for this sdtui home."""


class ServerRefused(ConnectionError):
    """The server would not talk to this client; the message says why and what to do."""


class ServerGone(ConnectionError):
    """The connection ended: the server stopped or was killed."""


class Connection:
    def __init__(self, sock: socket.socket, welcome: ServerState | None = None):
        self.sock = sock
        self.welcome = welcome  # the server's state as it greeted this client
        self._reader = FrameReader()
        self._frames: list[tuple[dict[str, Any], bytes]] = []

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.sock.sendall(encode_frame(message))
        except OSError as error:
            raise ServerGone(f"the sdtui server went away ({error})") from None

    def receive(self, timeout: float | None = None) -> tuple[dict[str, Any], bytes] | None:
        """The next message, or None when ``timeout`` passes first; ServerGone when it ends."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._frames:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            self.sock.settimeout(min(left, 1.0) if left is not None else 1.0)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as error:
                raise ServerGone(f"the sdtui server went away ({error})") from None
            if not data:
                raise ServerGone("the sdtui server went away")
            self._frames.extend(self._reader.feed(data))
        return self._frames.pop(0)

    def request(self, message: dict[str, Any], reply_type: str, timeout: float = 30.0) -> dict[str, Any]:
        """Send ``message`` and return the reply of ``reply_type`` (events that come between are kept)."""
        self.send(message)
        deadline = time.monotonic() + timeout
        held = []
        try:
            while time.monotonic() < deadline:
                frame = self.receive(timeout=deadline - time.monotonic())
                if frame is None:
                    break
                if frame[0].get("type") in (reply_type, "error"):
                    return frame[0]
                held.append(frame)
        finally:
            self._frames[:0] = held
        raise ServerGone(f"the sdtui server did not answer {message.get('type')!r} within {timeout:.0f} s")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5.0)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise NoServer(f"no sdtui server listens on {path}") from None
    except OSError:
        sock.close()
        raise
    return sock


def connect(data_dir: Path, client: str, logs: bool = False) -> Connection:
    """A connection to the running server, after the handshake; NoServer when none runs.
    ``logs``: the server sends its log lines too."""
    sock = _connect(socket_path(data_dir))
    connection = Connection(sock)
    connection.send(hello(client, logs))
    frame = connection.receive(timeout=30.0)
    if frame is None:
        connection.close()
        raise ServerGone("the sdtui server did not answer")
    message = frame[0]
    if message.get("type") != "welcome":
        connection.close()
        raise ServerRefused(str(message.get("message") or "the sdtui server refused this client"))
    problem = mismatch(message, from_server=True)
    if problem:
        connection.close()
        raise ServerRefused(problem)
    try:
        connection.welcome = decode_state(message)
    except ProtocolError as error:
        connection.close()
        raise ServerRefused(str(error)) from None
    return connection


def start_server(log_path: Path) -> subprocess.Popen:
    """``sdtui serve`` in the background: its own session (no terminal, so no hang-up reaches it),
    its output in the log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "tui", "serve"], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, env=os.environ.copy())


def connect_or_start(data_dir: Path, client: str, log_path: Path, wait_s: float = START_WAIT_S,
                     on_start=None, logs: bool = False) -> Connection:
    """Connect to the server, starting one first when none runs (a stale socket is replaced)."""
    try:
        return connect(data_dir, client, logs)
    except NoServer:
        pass
    if on_start:
        on_start()
    process = start_server(log_path)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            return connect(data_dir, client, logs)
        except NoServer:
            if process.poll() is not None and process.returncode != 0:
                try:  # another client's server may have won the race
                    return connect(data_dir, client, logs)
                except NoServer:
                    raise ServerGone(f"the sdtui server could not start; see {log_path}") from None
            time.sleep(0.1)
    raise ServerGone(f"the sdtui server did not start within {wait_s:.0f} s; see {log_path}")


def server_pid(data_dir: Path) -> int | None:
    try:
        return int(pid_path(data_dir).read_text().strip())
    except (OSError, ValueError):
        return None
