"""Progress and memory: step i/N, it/s, ETA from the median step time, elapsed, queue,
device memory and limit, process RSS, system RAM and swap, with a swap warning that
stands out while it lasts."""

from __future__ import annotations

import statistics
import time

from rich.text import Text
from rich.cells import cell_len
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import ProgressBar, Static

from tui.text import format_duration
from tui.engine.memory import MemorySample, format_bytes


def eta_seconds(step_times: list[float], steps_left: int) -> float:
    """Remaining time from the median of recent step times (robust to a slow first step)."""
    if not step_times or steps_left <= 0:
        return 0.0
    return statistics.median(step_times[-20:]) * steps_left


def memory_text(memory: MemorySample | None) -> Text:
    """One line, the most telling first: what the loaded model holds and which of its parts (text encoders
    "off" while images denoise without them), the job's peak, the device's use and limit, swap, the
    system's memory and the process's."""
    if memory is None:
        return Text("memory: waiting for the first step", style="dim")
    text = Text()
    if memory.held:
        loaded = [name for name, count in memory.held.items() if count]
        off = [name for name, count in memory.held.items() if not count]
        text.append("model ", style="bold")
        text.append(f"{format_bytes(sum(memory.held.values()))}: {', '.join(loaded)}")
        text.append(f" ({', '.join(off)} off)  " if off else "  ")
    if memory.job_peak:
        text.append("peak ", style="bold")
        text.append(format_bytes(memory.job_peak) + "  ")
    if memory.device_allocated is not None:
        text.append("GPU ", style="bold")
        text.append(f"{format_bytes(memory.device_allocated)}")
        if memory.device_limit:
            text.append(f" / {format_bytes(memory.device_limit)}")
        elif memory.device_unlimited:  # PYTORCH_MPS_HIGH_WATERMARK_RATIO=0: past the GPU's share, it swaps
            text.append(" / no limit", style="bold yellow")
        text.append("  ")
    text.append("swap ", style="bold")
    text.append(format_bytes(memory.swap_used) + "  ")
    text.append("RAM ", style="bold")
    text.append(f"{format_bytes(memory.system_used)} / {format_bytes(memory.system_total)}  ")
    text.append("RSS ", style="bold")
    text.append(format_bytes(memory.process_rss))
    return text


class Line(Widget):
    """Text that changes every step. Unlike ``Static.update``, which asks for a new layout of
    the whole screen, it only repaints itself unless the number of lines it needs changes."""

    DEFAULT_CSS = "Line { height: auto; }"

    def __init__(self, text: Text | None = None, wrap: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.text = text or Text()
        self.wrap = wrap
        self._rows = 1

    def set(self, text: Text) -> None:
        self.text = text
        if not self.wrap:
            self.refresh()
            return
        width = max(1, self.content_size.width)
        rows = max(1, -(-cell_len(text.plain) // width))
        self.refresh(layout=rows != self._rows)
        self._rows = rows

    def render(self) -> Text:
        return self.text


STATUS_INTERVAL_S = 0.25  # progress lines repaint at most this often; a job's last step at once


class StatusPanel(Vertical):
    DEFAULT_CSS = """
    StatusPanel { height: 4; }
    StatusPanel ProgressBar { width: 1fr; }
    StatusPanel ProgressBar Bar { width: 1fr; }
    StatusPanel Line { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    StatusPanel #swap-warning { height: 1; visibility: hidden; background: $error; color: $text; text-style: bold; }
    StatusPanel.swapping #swap-warning { visibility: visible; }
    """

    class Progressed(Message):
        """The progress lines now show ``report`` (a Step): for screens that follow the job too."""

        def __init__(self, report) -> None:
            super().__init__()
            self.report = report

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._pending = None  # the newest Step not yet shown
        self._due = 0.0
        self._timer = None
        self._download_start: tuple[float, int, str] | None = None  # when, bytes then, of which download
        self.step_times: list[float] = []
        self.total_steps = 0
        self.images = 1
        self.queue = 0
        self.state = "idle"
        self._last: tuple[int, int, float, float, int] = (0, 0, 0.0, 0.0, 0)  # step, total, elapsed, it/s, image
        self._stamp = time.monotonic()  # when _last was measured

    def compose(self) -> ComposeResult:
        yield ProgressBar(total=1, show_eta=False, show_percentage=False, id="progress")
        # One row each, whatever the width, so nothing below or beside them moves during a job.
        yield Line(id="progress-text", wrap=False)
        yield Line(memory_text(None), id="memory", wrap=False)
        yield Static(id="swap-warning")

    def on_mount(self) -> None:
        self._show_progress(0, 0, 0.0, 0.0, 0)
        # Elapsed time and ETA move every second between steps too: at 0.2 it/s a step takes
        # five seconds, and a line that stands still that long looks frozen.
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        if self.state == "generating":
            self._refresh_line()

    def set_queue(self, waiting: int) -> None:
        self.queue = waiting
        self._refresh_line()

    def job_started(self, images: int, steps: int) -> None:
        self.step_times = []
        self.images, self.total_steps = images, steps
        self.state = "generating"
        self.remove_class("swapping")
        self._show_progress(0, steps, 0.0, 0.0, 0)

    def step(self, step: int, total: int, image_index: int, step_seconds: float, elapsed: float,
             it_per_s: float, memory: MemorySample) -> None:
        self.step_times.append(step_seconds)
        self._show_progress(step, total, elapsed, it_per_s, image_index)
        self.query_one("#memory", Line).set(memory_text(memory))

    def offer(self, report) -> None:
        """A Step from the server: shown now, or within STATUS_INTERVAL_S if one was just shown
        (a fast GPU's steps would repaint the lines faster than anyone reads them)."""
        now = time.monotonic()
        self._pending = report
        if report.step == report.total or now >= self._due:
            self.flush()
        elif self._timer is None:
            self._timer = self.set_timer(self._due - now, self.flush)

    def flush(self) -> None:
        """Show the step still waiting, if any (a job ended: its last figures show now)."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        report, self._pending = self._pending, None
        if report is None:
            return
        self.step(report.step, report.total, report.image_index, report.step_seconds, report.elapsed,
                  report.it_per_s, report.memory)
        self._due = time.monotonic() + STATUS_INTERVAL_S
        self.post_message(self.Progressed(report))

    def show_memory(self, memory: MemorySample) -> None:
        """Memory between jobs, such as just after a model was unloaded or loaded."""
        self.query_one("#memory", Line).set(memory_text(memory))

    def download(self, report) -> str:
        """The progress bar and line show a model download (a DownloadProgress) instead of steps;
        returns how far it is, its rate since it began here, and the time left."""
        now = time.monotonic()
        # A single file's download is followed by its base repository's: the rate starts again with it.
        if self._download_start is None or self._download_start[2] != report.model:
            self._download_start = (now, report.done_bytes, report.model)
        began, first_bytes, _model = self._download_start
        rate = (report.done_bytes - first_bytes) / (now - began) if now > began else 0.0
        total = format_bytes(report.total_bytes) if report.total_bytes else "?"
        text = f"{format_bytes(report.done_bytes)} of {total} at {format_bytes(int(rate))}/s"
        if rate > 0 and report.total_bytes:
            text += f", {format_duration((report.total_bytes - report.done_bytes) / rate)} left"
        self.state = "downloading"
        self.query_one("#progress", ProgressBar).update(total=max(report.total_bytes or report.done_bytes, 1),
                                                        progress=report.done_bytes)
        self.query_one("#progress-text", Line).set(Text.assemble((text, "bold"), ("  Esc cancels", "dim")))
        return text

    def download_ended(self) -> None:
        self._download_start = None
        if self.state == "downloading":
            self.state = "idle"
            self._show_progress(0, 0, 0.0, 0.0, 0)

    def job_ended(self, state: str) -> None:
        if self.state != "generating":  # refused before its first step: no figures of its own
            self.step_times = []
            self._last, self._stamp = (0, 0, 0.0, 0.0, 0), time.monotonic()
            self.query_one("#progress", ProgressBar).update(total=1, progress=0)
        self.state = state
        self.remove_class("swapping")
        self._refresh_line()

    def swap_warning(self, message: str) -> None:
        self.query_one("#swap-warning", Static).update(Text(f"⚠ {message}"))
        self.add_class("swapping")

    def _show_progress(self, step: int, total: int, elapsed: float, it_per_s: float, image_index: int) -> None:
        self._last, self._stamp = (step, total, elapsed, it_per_s, image_index), time.monotonic()
        bar = self.query_one("#progress", ProgressBar)
        bar.update(total=max(total, 1), progress=step)
        self._refresh_line()

    def _refresh_line(self) -> None:
        step, total, elapsed, it_per_s, image_index = self._last
        steps_left = (total - step) + (self.images - image_index - 1) * total
        eta = eta_seconds(self.step_times, steps_left)
        if self.state == "generating":
            since = time.monotonic() - self._stamp
            elapsed, eta = elapsed + since, max(0.0, eta - since)
        text = Text()
        text.append(f"{step}/{total}", style="bold")
        if self.images > 1:
            text.append(f"  image {image_index + 1}/{self.images}")
        text.append(f"  {it_per_s:.2f} it/s  ETA {format_duration(eta)}"
                    f"  elapsed {format_duration(elapsed)}")
        text.append(f"  queue {self.queue}", style="bold" if self.queue else "dim")
        text.append(f"  {self.state}", style="dim")
        self.query_one("#progress-text", Line).set(text)
