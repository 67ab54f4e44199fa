"""The live log: timestamped lines from the engine and from Python logging.

Every line is plain text (never markup) passed through ``visible()``, so a prompt or a
library message cannot style the log or send control sequences to the terminal.
"""

from __future__ import annotations

import logging
import time

from rich.text import Text
from textual.widgets import RichLog

from tui.text import visible

LOG_LINES = 2000  # kept on screen for scrolling back; the log file keeps everything
LEVEL_STYLES = {"error": "bold red", "warning": "yellow", "info": "", "debug": "dim"}


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
        self.write(line)

    def clear_lines(self) -> None:
        self.lines_written.clear()
        self.clear()


class LogForwarder(logging.Handler):
    """Sends log records to the app as messages; safe from any thread."""

    def __init__(self, post, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._post = post

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("tui.") and record.levelno < logging.ERROR:
            return  # libraries' own chatter and warnings stay in the log file
        try:
            text = record.getMessage()
            if record.name.startswith("tui."):
                label = text
            else:
                label = f"[{record.name.split('.')[0]}] {text}"
            self._post(record.levelname.lower(), label.splitlines()[0] if label else label, record.created)
        except Exception:  # logging must never break the app
            self.handleError(record)
