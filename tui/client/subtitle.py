"""The header's subtitle: the loaded model, or what is happening to the model, as the Session's
messages tell it. Plain text from a message and the Session, so it is checked without an app;
the main screen puts it in the header."""

from __future__ import annotations

from tui.client import messages as m
from tui.engine.memory import format_bytes
from tui.text import plural


def model_line(model, device, dtype) -> str:
    return f"{model} · {device} · {dtype}"


def _connected(message: m.Connected, session) -> str | None:
    state = message.state
    if state.model:  # a busy server gets to this client's own load only after its queue
        return model_line(state.model, state.device, state.dtype)
    return "loading a model…" if state.loading else None


def _load_failed(message: m.LoadFailed, session) -> str:
    if message.event.kept is None:
        return "no model loaded"
    return model_line(session.model, session.device, session.dtype)  # the model kept


def _unloaded(message: m.Unloaded, session) -> str:
    freed = message.event.freed
    return f"{message.event.model} unloaded{f', {format_bytes(freed)} freed' if freed else ''}; it loads again " \
           "with the next job"


SUBTITLES = {
    m.Connected: _connected,
    m.ServerLost: lambda message, session: "no sdtui server",
    m.LoadStarted: lambda message, session: f"loading {message.event.model}…",
    m.Unloaded: _unloaded,
    m.Loaded: lambda message, session: model_line(message.event.model, message.event.device, message.event.dtype),
    m.LoadFailed: _load_failed,
}


def subtitle_for(message, session) -> str | None:
    """The subtitle once ``message`` (one of the Session's) has come; None: it stays as it is."""
    make = SUBTITLES.get(type(message))
    return make(message, session) if make is not None else None


def with_waiting(subtitle: str, what: str, ahead: int) -> str:
    """``subtitle`` saying that ``what`` (a model) loads after ``ahead`` jobs, in place of any
    model it said was waiting."""
    return f"{subtitle.split(' · waiting')[0]} · waiting: {what} loads after {plural(ahead, 'job')}"
