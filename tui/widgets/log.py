"""The live log: timestamped lines from the engine and from Python logging.

Every line is plain text (never markup) passed through ``visible()``, so a prompt or a
library message cannot style the log or send control sequences to the terminal.
"""

from __future__ import annotations

import logging
import re
import time

from rich.text import Text
from textual.widgets import RichLog

from tui.logs import screen_line
from tui.text import visible

LOG_LINES = 2000  # kept on screen for scrolling back; the log file keeps everything
LEVEL_STYLES = {"error": "bold red", "warning": "yellow", "info": "", "debug": "dim"}
INDENT = 9  # continuation lines start under the text, past the "HH:MM:SS " stamp


def break_offsets(plain: str, width: int, indent: int = INDENT) -> list[int]:
    """Where to break ``plain`` into lines of at most ``width`` cells, continuation lines
    indented by ``indent``: at spaces, and inside a long path after a "/" (or a "-" in a
    long file name) rather than mid-word."""
    pieces = [piece for piece in re.split(r"(?<=\s)(?=\S)|(?<=[/-])(?=[^/\s-])", plain) if piece]
    offsets, line, position = [], 0, 0
    room = width
    for piece in pieces:
        while len(piece.rstrip()) > room - line:
            if line > 0:  # start a new line for this piece
                offsets.append(position)
                line, room = 0, max(1, width - indent)
                continue
            offsets.append(position + room)  # a piece longer than a whole line: cut it
            piece, position = piece[room:], position + room
            room = max(1, width - indent)
        line += len(piece)
        position += len(piece)
    return offsets


class LogPanel(RichLog):
    DEFAULT_CSS = """
    LogPanel { height: 8; border-top: solid $primary-darken-2; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(markup=False, highlight=False, wrap=True, max_lines=LOG_LINES, auto_scroll=True,
                         min_width=20, **kwargs)  # wrap to the side column, however narrow
        self.lines_written: list[str] = []

    def add(self, text: str, level: str = "info", created: float | None = None) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(created or time.time()))
        body = visible(text)
        line = Text()
        line.append(stamp + " ", style="dim")
        if level in ("warning", "error"):
            line.append(level + ": ", style=LEVEL_STYLES[level])
        line.append(body, style=LEVEL_STYLES.get(level, ""))
        self.lines_written.append(f"{stamp} {level}: {body}")
        del self.lines_written[:-LOG_LINES]
        width = self.scrollable_content_region.width
        if width < self.min_width or len(line) <= width:
            self.write(line)
            return
        rows = line.divide(break_offsets(line.plain, width))
        for index, row in enumerate(rows):
            row.rstrip()
            self.write(row if index == 0 else Text(" " * INDENT) + row)

    def clear_lines(self) -> None:
        self.lines_written.clear()
        self.clear()


class LogForwarder(logging.Handler):
    """Sends log records to the app as messages; safe from any thread."""

    def __init__(self, post, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._post = post

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = screen_line(record)
            if line is not None:
                self._post(record.levelname.lower(), line, record.created)
        except Exception:  # logging must never break the app
            self.handleError(record)
