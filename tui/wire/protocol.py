"""The messages between ``sdtui serve`` and its clients, and how they travel.

A frame is one line of JSON (UTF-8, at most MAX_LINE bytes), optionally followed by raw
bytes: a message with ``"payload": n`` is followed by exactly n bytes (a preview's RGB
pixels at latent resolution). Nothing is pickled, so a client can never make the server run
code, and either side can be written in any language.

Every connection starts with the client's ``hello`` naming PROTOCOL_VERSION and the sdtui
version; the server answers ``welcome``, or ``refused`` with one sentence and closes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from typing import Any

from tui import __version__
from tui.engine.events import (Cancelled, DownloadProgress, Failed, Finished, Loaded, LoadStarted, Notice, Started,
                               Step, Timings)
from tui.engine.families import ModelFamily
from tui.engine.memory import MemorySample
from tui.engine.request import GenerationRequest

PROTOCOL_VERSION = 4  # 4: JobDone says how its job ended (ended, reason); log lines name their job
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
    return f"this sdtui ({client}) and the running sdtui server ({server}) differ; run `sdtui stop`, then try again"


# --- engine events as messages ------------------------------------------------------------


def memory_sample(data: dict[str, Any] | None) -> MemorySample | None:
    if not isinstance(data, dict):
        return None
    known = {f.name for f in fields(MemorySample)}
    return MemorySample(**{k: v for k, v in data.items() if k in known})


def _request(data: dict[str, Any] | None) -> GenerationRequest | None:
    return GenerationRequest(**data) if isinstance(data, dict) else None


def encode_event(event: Any, job: int | None) -> tuple[dict[str, Any], bytes]:
    """A message for an engine or queue event (``job``: the job it belongs to, if any)."""
    kind = type(event).__name__
    message: dict[str, Any] = {"type": "event", "event": kind, "job": job}
    payload = b""
    if isinstance(event, Step):
        data = {k: v for k, v in asdict(event).items() if k != "preview"}
        preview = event.preview
        if preview is not None:
            payload = preview.convert("RGB").tobytes()
            data["preview_size"] = list(preview.size)
        message.update(data)
    elif isinstance(event, Finished):  # the pixels, so clients show the image before it is saved
        image = event.image.convert("RGB")
        payload = image.tobytes()
        message.update({"index": event.index, "seed": event.seed, "request": asdict(event.request),
                        "timings": asdict(event.timings), "info": event.info, "size": list(image.size)})
    elif hasattr(event, "finished") and hasattr(event, "path"):  # ImageSaved: the path, not the pixels
        done = event.finished
        message.update({"path": str(event.path), "index": done.index, "seed": done.seed,
                        "request": asdict(done.request), "timings": asdict(done.timings), "info": done.info})
    elif isinstance(event, Loaded):
        message.update({k: v for k, v in asdict(event).items() if k not in ("family_info",)})
        message["family_info"] = asdict(event.family_info) if event.family_info else None
    elif hasattr(event, "__dataclass_fields__"):
        message.update(asdict(event))
    else:
        raise TypeError(f"not an event: {kind}")
    return message, payload


def decode_event(message: dict[str, Any], payload: bytes = b"") -> Any:
    """The engine event a message carries (queue and saving events stay dicts)."""
    kind = message.get("event")
    data = {k: v for k, v in message.items() if k not in ("type", "event", "job", "payload")}
    if kind == "Step":
        preview = None
        size = data.pop("preview_size", None)
        if payload and size:
            from PIL import Image

            preview = Image.frombytes("RGB", tuple(size), payload)
        return Step(**{**data, "memory": memory_sample(data.get("memory")), "preview": preview})
    if kind == "Started":
        return Started(_request(data["request"]), data["images"], data["steps"])
    if kind == "Finished":
        from PIL import Image

        image = Image.frombytes("RGB", tuple(data["size"]), payload)
        return Finished(image, data["index"], data["seed"], _request(data["request"]), Timings(**data["timings"]),
                        data.get("info") or {})
    if kind == "Loaded":
        family = data.pop("family_info", None)
        return Loaded(**{**data, "decisions": tuple(data.get("decisions", ())), "memory": memory_sample(data.get("memory")),
                         "family_info": ModelFamily(**family) if isinstance(family, dict) else None})
    if kind == "Cancelled":
        return Cancelled(_request(data["request"]), data["completed"], data.get("message", "cancelled"))
    if kind == "Failed":
        return Failed(_request(data.get("request")), data["message"], data.get("out_of_memory", False),
                      data.get("completed", 0))
    simple = {"LoadStarted": LoadStarted, "DownloadProgress": DownloadProgress, "Notice": Notice}
    if kind in simple:
        return simple[kind](**data)
    return {"event": kind, **data}
