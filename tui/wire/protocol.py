"""The messages between ``sdtui serve`` and its clients, and how they travel.

A frame is one line of JSON (UTF-8, at most MAX_LINE bytes), optionally followed by raw
bytes: a message with ``"payload": n`` is followed by exactly n bytes (a preview's RGB
pixels at latent resolution). Nothing is pickled, so a client can never make the server run
code, and either side can be written in any language.

Every connection starts with the client's ``hello`` naming PROTOCOL_VERSION and the sdtui
version; the server answers ``welcome`` (its state), or ``refused`` with one sentence and
closes. The events the server sends, and its state, are typed in tui/wire/events.py.
"""

from __future__ import annotations

import json
from typing import Any

from tui import __version__

PROTOCOL_VERSION = 6  # 6: a model's family is named by its registry id ("sd1", "zimage"...); 5: typed events
# 4: JobDone says how its job ended (ended, reason); log lines name their job
# 3: requests carry template, init_image, strength and hires; options carry models_dir
MAX_LINE = 1 << 20  # a message line; prompts are at most 20,000 characters
MAX_PAYLOAD = 16 << 20  # a finished 2048x2048 image is 12 MiB of RGB; this bounds a bad peer


class ProtocolError(ValueError):
    """The other side sent something that is not a message of this protocol."""


def encode_frame(message: dict[str, Any], payload: bytes = b"") -> bytes:
    if payload:
        message = {**message, "payload": len(payload)}
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n" + payload


def _parse_line(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError:
        raise ProtocolError("a message is not valid JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("a message has no type")
    size = message.get("payload", 0)
    if not isinstance(size, int) or not 0 <= size <= MAX_PAYLOAD:
        raise ProtocolError("a message announces a payload of a size not allowed")
    return message


class FrameReader:
    """Frames from bytes as they arrive (from ``recv``, in pieces of any size)."""

    def __init__(self):
        self._buffer = bytearray()
        self._pending: dict[str, Any] | None = None  # a message waiting for its payload

    def feed(self, data: bytes) -> list[tuple[dict[str, Any], bytes]]:
        self._buffer += data
        frames = []
        while True:
            if self._pending is None:
                end = self._buffer.find(b"\n")
                if end < 0:
                    if len(self._buffer) > MAX_LINE:
                        raise ProtocolError("a message line is too long")
                    return frames
                if end > MAX_LINE:
                    raise ProtocolError("a message line is too long")
                self._pending = _parse_line(bytes(self._buffer[:end]))
                del self._buffer[:end + 1]
            size = self._pending.get("payload", 0)
            if len(self._buffer) < size:
                return frames
            payload = bytes(self._buffer[:size])
            del self._buffer[:size]
            frames.append((self._pending, payload))
            self._pending = None


# --- the handshake ------------------------------------------------------------------------


def hello(client: str, logs: bool = False) -> dict[str, Any]:
    """``logs``: this client shows the server's log lines (it runs in another process)."""
    return {"type": "hello", "protocol": PROTOCOL_VERSION, "sdtui": __version__, "client": client, "logs": logs}


def mismatch(message: dict[str, Any], from_server: bool = False) -> str | None:
    """Why a peer's hello (or, ``from_server``, its welcome) cannot be talked to, or None when it
    can; worded for the person at the client, who is the one to run `sdtui stop`."""
    theirs = str(message.get("sdtui") or "unknown")
    if message.get("protocol") == PROTOCOL_VERSION and theirs == __version__:
        return None
    client, server = (__version__, theirs) if from_server else (theirs, __version__)
    if client == server:  # the same release number, built from different code (an upgrade in place)
        ours = PROTOCOL_VERSION
        other = message.get("protocol", "unknown")
        client, server = (f"{client}, protocol {ours}", f"{server}, protocol {other}") if from_server else \
            (f"{client}, protocol {other}", f"{server}, protocol {ours}")
    return f"this sdtui ({client}) and the running sdtui server ({server}) differ; run `sdtui stop`, then try again"
