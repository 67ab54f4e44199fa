"""The headless progress display on stderr: a one-line bar with it/s, ETA and memory.

On a terminal the line redraws in place; piped to a file it prints a line at each
quarter of a job, so logs stay readable. A failure is not drawn here: the command says it
once, as its last line.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from typing import TextIO

from tui.engine.events import (Cancelled, DownloadProgress, Event, Finished, Loaded, LoadStarted, Notice, Started,
                               Step)
from tui.engine.memory import MemorySample, format_bytes
from tui.text import format_duration, plural, visible


def memory_summary(memory: MemorySample) -> str:
    parts = []
    if memory.device_allocated is not None:
        limit = "no limit" if memory.device_unlimited else format_bytes(memory.device_limit)
        parts.append(f"GPU {format_bytes(memory.device_allocated)}/{limit}")
    parts.append(f"RSS {format_bytes(memory.process_rss)}")
    parts.append(f"RAM {format_bytes(memory.system_used)}/{format_bytes(memory.system_total)}")
    parts.append(f"swap {format_bytes(memory.swap_used)}")
    return "  ".join(parts)


class StderrProgress:
    def __init__(self, stream: TextIO | None = None, width: int = 24):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self._step_times: list[float] = []
        self._images = 1
        self._open_line = False
        self._last_quarter = -1
        self._last_draw = 0.0

    def line(self, text: str) -> None:
        """A line of its own (a log line, say), below the bar."""
        self.end_bar()
        self.stream.write(visible(text) + "\n")  # model names and messages may hold control characters
        self.stream.flush()

    def end_bar(self) -> None:
        """End the line the bar is redrawn on, so what is printed next starts a line of its own."""
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False

    def _redraw(self, text: str) -> None:
        # One row, cut to the terminal's width: a line that wraps cannot be redrawn in place.
        width = shutil.get_terminal_size((200, 24)).columns - 1
        self.stream.write("\r\x1b[2K" + visible(text)[:max(20, width)])
        self.stream.flush()
        self._open_line = True

    def __call__(self, event: Event) -> None:
        if isinstance(event, LoadStarted):
            self.line(f"loading {event.model} ({event.source})")
        elif isinstance(event, DownloadProgress):
            total = format_bytes(event.total_bytes) if event.total_bytes else "?"
            text = f"downloading {event.model}: {format_bytes(event.done_bytes)} of {total}"
            if self.tty:
                self._redraw(text)
            elif time.monotonic() - self._last_draw > 5:
                self._last_draw = time.monotonic()
                self.line(text)
        elif isinstance(event, Loaded):
            self.line(f"loaded {event.model} [{event.family}] on {event.device} ({event.dtype}) "
                       f"in {event.seconds:.1f} s")
        elif isinstance(event, Started):
            self._images = event.images
            self._step_times = []
            self._last_quarter = -1
            request = event.request
            width, height = request.output_size  # a hires fix's, not its first pass's
            self.line(f"generating {plural(event.images, 'image')} {width}x{height}, {plural(request.steps, 'step')}, "
                      f"{request.scheduler}, seed {request.seed}")
        elif isinstance(event, Step):
            self._step(event)
        elif isinstance(event, Notice):
            self.line(f"{'warning: ' if event.level == 'warning' else ''}{event.message}")
        elif isinstance(event, Finished):
            self.image_line(event.index, event.request.count, event.seed, event.timings.total_s,
                            event.timings.it_per_s)
        elif isinstance(event, Cancelled):
            self.line(f"cancelled after {plural(event.completed, 'image')}")

    def image_line(self, index: int, count: int, seed: int, seconds: float, it_per_s: float) -> None:
        self.line(f"image {index + 1}/{count}: seed {seed}, {seconds:.1f} s, {it_per_s:.2f} it/s")

    def _step(self, event: Step) -> None:
        self._step_times.append(event.step_seconds)
        median = statistics.median(self._step_times[-20:])
        remaining_images = self._images - event.image_index - 1
        remaining = (event.total - event.step) + remaining_images * event.total
        filled = int(self.width * event.step / event.total)
        bar = "#" * filled + "-" * (self.width - filled)
        text = (f"[{bar}] {event.step}/{event.total}"
                + (f" image {event.image_index + 1}/{self._images}" if self._images > 1 else "")
                + f"  {event.it_per_s:.2f} it/s  ETA {format_duration(median * remaining)}"
                + f"  {memory_summary(event.memory)}")
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw >= 0.1 or event.step == event.total:
                self._last_draw = now
                self._redraw(text)
            return
        quarter = 4 * event.step // event.total
        if quarter != self._last_quarter:
            self._last_quarter = quarter
            self.line(text)
