"""Asking the terminal what it can draw, after the first frame, without its answers reaching
the app as key presses.

Textual reads stdin on its own thread and turns any escape sequence it does not know into
keys, so the answers to the graphics queries would be typed into the prompt. The input
parser here takes those answers out of the stream first, only while queries are
outstanding, and hands them to a callback; everything else goes on to Textual unchanged.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver

from tui.client.widgets.graphics import REPLY, REPLY_PREFIXES

QUERY_WINDOW_S = 5.0  # replies later than this are not waited for (and are not filtered)


class ReplyListener:
    """Where the input thread delivers replies; ``expect`` opens the window for them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0
        self.on_reply: Callable[[str], None] = lambda reply: None

    def expect(self, on_reply: Callable[[str], None], seconds: float = QUERY_WINDOW_S) -> None:
        with self._lock:
            self.on_reply = on_reply
            self._until = time.monotonic() + seconds

    def close(self) -> None:
        with self._lock:
            self._until = 0.0

    @property
    def open(self) -> bool:
        return time.monotonic() < self._until


LISTENER = ReplyListener()


def split_replies(data: str, held: str) -> tuple[list[str], str, str]:
    """``held`` + ``data`` split into (replies, what goes on to Textual, what to hold until the
    next read because it may be the start of a reply cut by the read's end)."""
    text = held + data
    replies = [m.group(0) for m in REPLY.finditer(text)]
    rest = REPLY.sub("", text)
    start = rest.rfind("\x1b")
    if start >= 0 and len(rest) - start < 512:
        tail = rest[start:]
        if any(p.startswith(tail) or tail.startswith(p) for p in REPLY_PREFIXES):
            return replies, rest[:start], tail
    return replies, rest, ""


# How long a possible start of a reply waits for the rest (the Escape key, if none comes). The two
# halves of a reply cut across reads can be more than 0.1 s apart on a busy machine or a slow link.
HOLD_S = 0.3


class ReplyFilteringParser(XTermParser):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._held = ""
        self._held_at = 0.0

    def feed(self, data: str):
        if not data or not (LISTENER.open or self._held):
            if self._held:
                data, self._held = self._held + data, ""
            return super().feed(data)
        replies, rest, held = split_replies(data, self._held)
        if held and not LISTENER.open:  # the window closed: nothing more is coming
            rest, held = rest + held, ""
        if held and held != self._held:
            self._held_at = time.monotonic()
        self._held = held
        for reply in replies:
            LISTENER.on_reply(reply)
        return super().feed(rest) if rest else iter(())

    def tick(self):
        """Called by the input thread after every wait for input (at most 0.1 s): what was held
        as the possible start of a reply and got no continuation goes on as keys (an Escape
        press during the query window arrives at most about 0.4 s late)."""
        if self._held and time.monotonic() - self._held_at > HOLD_S:
            data, self._held = self._held, ""
            yield from super().feed(data)
        yield from super().tick()


class QueryingDriver(LinuxDriver):
    """Textual's Linux/macOS driver, reading input through ReplyFilteringParser."""

    def run_input_thread(self) -> None:
        import textual.drivers.linux_driver as linux_driver

        # The input thread builds its parser from this module's name; it is looked up when
        # the thread starts, so the filtering parser takes its place for this driver.
        # tests/client/test_graphics.py checks in a real pty that replies never become keys.
        linux_driver.XTermParser = ReplyFilteringParser
        super().run_input_thread()


def tmux_facts(timeout: float = 2.0) -> dict[str, str] | None:
    """What the tmux this app runs in knows: its allow-passthrough option, and the outer
    terminal's name (its XTVERSION answer) and features as tmux recorded them at attach.
    None when tmux cannot be asked."""
    import subprocess

    def ask(*args: str) -> str | None:
        try:
            done = subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    passthrough = ask("show", "-gv", "allow-passthrough")
    client = ask("display", "-p", "#{client_termtype}\t#{client_termfeatures}")
    if client is None:
        return None
    termtype, _, features = client.partition("\t")
    return {"allow-passthrough": passthrough or "off", "client_termtype": termtype, "client_termfeatures": features}


def detect_graphics(app, setting: str, use: Callable) -> None:
    """Decide how ``app`` draws pictures and call ``use(choice)`` on the app's thread: at once for
    a named protocol or half blocks, from tmux's facts inside tmux, else once the terminal has
    answered QUERIES (asked now, after the first frame) or QUERY_WINDOW_S has passed. The cell's
    pixel size, which Sixel needs, is asked for too and kept as ``app.terminal.cell_size``.

    A named protocol is used at once; where an answer can speak for or against it (Sixel
    anywhere, Kitty outside a multiplexer), ``use`` is called again with the answer, and only
    that choice carries a warning, so the log gets one."""
    import os
    from dataclasses import replace

    from tui.client.widgets.graphics import QUERIES, Choice, choose_graphics, multiplexer, read_replies

    driver = getattr(app, "_driver", None)
    askable = isinstance(driver, QueryingDriver)
    inside = multiplexer(os.environ)

    def ask(then: Callable) -> None:
        replies: list[str] = []
        decided: list[bool] = []

        def answered() -> None:
            if decided:
                return
            decided.append(True)
            found = read_replies(replies)
            app.terminal.cell_size = found.cell
            then(found)

        def on_reply(reply: str) -> None:  # on Textual's input thread
            replies.append(reply)
            if reply.startswith("\x1b[?"):  # DA1, sent last, is in: every answer is
                LISTENER.close()
                app.call_from_thread(answered)

        def no_answer() -> None:
            LISTENER.close()
            answered()

        LISTENER.expect(on_reply)
        driver.write(QUERIES)
        app.set_timer(QUERY_WINDOW_S, no_answer)

    def named(tmux: dict[str, str] | None) -> None:
        """A protocol named by the setting: used now, and the answers add to it where they can."""
        choice = choose_graphics(setting, None, tmux, inside)
        if askable and (setting == "sixel" or (setting == "kitty" and inside is None)):
            use(replace(choice, warning=""))
            ask(lambda found: use(choose_graphics(setting, found, tmux, inside)))
        else:
            use(choice)

    if setting == "halfblock":
        use(choose_graphics(setting, None))
        return
    if os.environ.get("TMUX"):
        def in_tmux() -> None:
            facts = tmux_facts()
            if facts is None:
                app.call_from_thread(use, Choice("halfblock", "inside tmux, which could not be asked what it passes on"))
            elif setting == "auto":
                app.call_from_thread(use, choose_graphics(setting, None, facts))
            else:
                app.call_from_thread(named, facts)

        app.run_worker(in_tmux, thread=True, exit_on_error=False)
        return
    if setting != "auto":
        named(None)
    elif not askable:
        use(Choice("halfblock", "not on a terminal that can be asked (headless, or Windows)"))
    else:
        ask(lambda found: use(choose_graphics(setting, found)))
