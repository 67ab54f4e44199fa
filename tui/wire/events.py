"""Every event that travels from the server to its clients, in one registry, and how it travels.

An event is a frozen dataclass: the engine's own (tui/engine/events.py), the job queue's reports
below, and the server's state. ``encode_event`` writes any of them by its fields, with its one
picture (a field marked ``image``) as the frame's payload; ``decode_event`` reads it back into
the same class, by the field types. One name per event on both sides: the client's Textual
message for an event has the event's own name. Adding an event is a dataclass here (or in the
engine) plus its entry in EVENTS.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui.engine.events import (Cancelled, DownloadProgress, Failed, Finished, Loaded, LoadStarted, Notice, Started,
                               Step, Timings, Unloaded)
from tui.engine.families import ModelFamily
from tui.engine.request import GenerationRequest
from tui.wire.protocol import ProtocolError

# --- the job queue's reports ---------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    """A job was queued by another client (a client hears of its own jobs in the reply)."""
    request: GenerationRequest
    client: str = ""  # "generate", "app"


@dataclass(frozen=True)
class QueueChanged:
    waiting: int
    running: bool
    running_job: int | None = None  # its number
    loading: bool = False  # a model load (or download) runs now


@dataclass(frozen=True)
class ImageSaved:
    """A finished image is on disk and in the history. The pixels came with its Finished."""
    path: str
    index: int
    seed: int
    request: GenerationRequest
    timings: Timings
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, finished: Finished, path: Path | str) -> "ImageSaved":
        return cls(str(path), finished.index, finished.seed, finished.request, finished.timings, finished.info)


@dataclass(frozen=True)
class SaveFailed:
    message: str


@dataclass(frozen=True)
class LoadFailed:
    model: str
    message: str
    kept: str | None = None  # the model still loaded (the one before), if any


@dataclass(frozen=True)
class HistoryRepaired:
    message: str


@dataclass(frozen=True)
class ServiceCrashed:
    message: str


@dataclass(frozen=True)
class ClientsChanged:
    """A client came or went; ``clients``: the kind of each one connected now ("app", "generate"),
    in the order they came. Momentary ones (`sdtui status`, `sdtui stop`) are not counted."""
    clients: tuple[str, ...]
    came: str = ""
    left: str = ""


# How a job ended. refused: bad input found once it was its turn (a LoRA the prompt names is not
# there, a model name nothing answers to); dropped: it never started (cancelled while waiting, or
# the queue was cleared); stopped: the server stopped before it finished.
ENDINGS = ("done", "failed", "refused", "cancelled", "dropped", "stopped")


@dataclass(frozen=True)
class JobDone:
    """The last word on a job: every job gets exactly one, whatever ended it."""
    number: int
    images: int  # saved
    ended: str = "done"  # one of ENDINGS
    reason: str = ""  # one sentence for every ending but done


# --- the server's state: its welcome, and the answer to `sdtui status` ------------------------


@dataclass(frozen=True)
class ServerState:
    protocol: int
    sdtui: str
    pid: int
    since: float  # wall time it started
    model: str | None = None  # the loaded model's label
    device: str | None = None
    dtype: str | None = None
    loaded: str | None = None  # the loaded model as its setting names it
    family_info: ModelFamily | None = None
    slicing: bool | None = None
    loading: bool = False
    running: int | None = None  # the running job's number
    waiting: tuple[int, ...] = ()  # the waiting jobs' numbers, in order
    finished_jobs: int = 0
    clients: int = 0
    keep_alive_s: float = 600.0
    queue_emptied_at: float | None = None
    keeping_awake: bool = False
    idle_s: float = 0.0
    rss: int = 0
    running_prompt: str | None = None
    running_step: tuple[int, ...] | None = None  # (step, of steps)
    running_images: int = 1
    running_image: int = 1
    history_notice: str | None = None  # what reconciling the history changed, told to the first client


# --- the registry ----------------------------------------------------------------------------

EVENTS: dict[str, type] = {cls.__name__: cls for cls in (
    LoadStarted, DownloadProgress, Loaded, Unloaded, Notice, Started, Step, Finished, Cancelled, Failed,
    Queued, QueueChanged, ImageSaved, SaveFailed, LoadFailed, HistoryRepaired, ServiceCrashed, JobDone,
    ClientsChanged)}


def encode_event(event: Any, job: int | None) -> tuple[dict[str, Any], bytes]:
    """The message for ``event`` (``job``: the job it belongs to, if any) and its payload."""
    kind = type(event).__name__
    if EVENTS.get(kind) is not type(event):
        raise TypeError(f"not an event of the protocol: {kind}")
    message, payload = {"type": "event", "event": kind, "job": job}, b""
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if f.metadata.get("image"):
            if value is not None:
                image = value.convert("RGB")
                payload = image.tobytes()
                value = list(image.size)
        message[f.name] = to_wire(value)
    return message, payload


def decode_event(message: dict[str, Any], payload: bytes = b"") -> Any:
    """The event a message carries, as its own class; ProtocolError for one this side does not know."""
    cls = EVENTS.get(str(message.get("event")))
    if cls is None:
        raise ProtocolError(f"an event of a kind this sdtui does not know: {message.get('event')!r}")
    try:
        return from_wire(cls, message, payload)
    except (TypeError, ValueError, KeyError) as error:
        raise ProtocolError(f"a {cls.__name__} event that does not fit its fields ({error})") from None


def encode_state(state: ServerState, kind: str) -> dict[str, Any]:
    return {"type": kind, **to_wire(state)}


def decode_state(message: dict[str, Any]) -> ServerState:
    try:
        return from_wire(ServerState, message)
    except (TypeError, ValueError, KeyError) as error:
        raise ProtocolError(f"the server's state does not fit its fields ({error})") from None


# --- by the fields ---------------------------------------------------------------------------


def to_wire(value: Any) -> Any:
    """JSON's own types for a value: dataclasses by their fields, tuples as lists, paths as text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def from_wire(cls: type, data: dict[str, Any], payload: bytes = b"") -> Any:
    """An instance of dataclass ``cls`` from its fields in ``data`` (other keys are ignored, a
    missing field takes its default); the field marked ``image`` is made from ``payload``."""
    hints = _hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        raw = data[f.name]
        if f.metadata.get("image"):
            values[f.name] = _image(raw, payload)
        else:
            values[f.name] = _typed(hints[f.name], raw)
    return cls(**values)


def _typed(hint: Any, raw: Any) -> Any:
    if raw is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _typed(options[0], raw) if len(options) == 1 else raw
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(raw, dict):
            raise TypeError(f"{hint.__name__} is not an object")
        return from_wire(hint, raw)
    if origin is tuple or hint is tuple:
        return tuple(raw)
    if hint is Path:
        return Path(raw)
    return raw


def _image(size: Any, payload: bytes):
    if not size or not payload:
        return None
    from PIL import Image

    return Image.frombytes("RGB", (int(size[0]), int(size[1])), payload)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)
