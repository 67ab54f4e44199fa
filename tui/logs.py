"""Where log records go: a rotating file always; stderr only when asked (--verbose)."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# ``extra=`` for a line that only the log file needs (the app already says it another way).
FOR_THE_LOG_FILE = {"log_file_only": True}
# ``extra=`` for a server's start and stop: with its warnings and errors, what it says on stderr
# (logs/server.log, for a server started in the background).
SERVER_LIFE = {"server_life": True}


def screen_line(record: logging.LogRecord) -> str | None:
    """The one line a record shows in the app's live log, or None when it stays in the log file:
    libraries' own chatter and warnings (their errors show), and lines marked FOR_THE_LOG_FILE."""
    if getattr(record, "log_file_only", False):
        return None
    if not record.name.startswith("tui.") and record.levelno < logging.ERROR:
        return None
    text = record.getMessage()
    label = text if record.name.startswith("tui.") else f"[{record.name.split('.')[0]}] {text}"
    return label.splitlines()[0] if label else label


class VisibleFormatter(logging.Formatter):
    """For a terminal: control characters in messages (a prompt, a path) shown as escapes."""

    def format(self, record: logging.LogRecord) -> str:
        from tui.text import visible

        return visible(super().format(record), keep_newlines=True)


def setup_logging(log_file: Path | None, verbose: bool = False) -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=2_000_000, backupCount=3,
                                                           encoding="utf-8")
        except OSError:
            handler = logging.NullHandler()  # an unwritable log must not stop image generation
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    else:
        root.addHandler(logging.NullHandler())
    if verbose:
        stream = logging.StreamHandler()
        stream.setFormatter(VisibleFormatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(stream)


class _LastWords(logging.Filter):
    """A server's start and stop (with the reason), and sdtui's warnings and errors (libraries'
    errors only): what says why a server is gone."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "server_life", False):
            return True
        return record.levelno >= logging.WARNING and screen_line(record) is not None


def log_last_words_to_stderr() -> None:
    """For ``sdtui serve``: a background server's stderr is logs/server.log, the file a client names
    when the server goes away, so its stop and failures must be said there too (everything else
    goes to the sdtui log)."""
    stream = logging.StreamHandler()
    stream.setFormatter(VisibleFormatter(FORMAT))
    stream.addFilter(_LastWords())
    logging.getLogger().addHandler(stream)
