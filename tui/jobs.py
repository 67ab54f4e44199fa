"""What happens to a job's results: every finished image is saved with its history row,
and a cancelled or failed job leaves a row saying so. Shared by the CLI and the app."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from tui.engine.events import Cancelled, Event, Failed, Finished
from tui.store.history import History, HistoryEntry, info_fields

log = logging.getLogger("tui.jobs")


def numbered_output(output: Path, index: int, count: int) -> Path:
    """``--output fox.png`` names the only image; with several, they become fox-1.png, fox-2.png, ..."""
    if count == 1:
        return output
    suffix = output.suffix or ".png"
    return output.with_name(f"{output.stem}-{index + 1}{suffix}")


@dataclass
class JobRecorder:
    history: History
    output: Path | None = None
    outputs_dir: Path | None = None  # where new names go; None: the history's outputs folder
    saved: list[Path] = field(default_factory=list)

    def __call__(self, event: Event) -> Path | None:
        """Record ``event`` if it ends an image or a job; returns the saved path for a finished image."""
        if isinstance(event, Finished):
            return self._save(event)
        if isinstance(event, Cancelled):
            self.history.add(HistoryEntry.for_request(event.request, "cancelled", error=event.message,
                                                      image_index=event.completed))
        elif isinstance(event, Failed) and event.request is not None:
            self.history.add(HistoryEntry.for_request(event.request, "failed", error=event.message,
                                                      image_index=event.completed))
        return None

    def _save(self, event: Finished) -> Path:
        request, timings, info = event.request, event.timings, event.info
        entry = HistoryEntry.for_request(
            request, "done", image_index=event.index, load_s=timings.load_s, first_step_s=timings.first_step_s,
            total_s=timings.total_s, it_per_s=timings.it_per_s, peak_memory=timings.peak_memory,
            **info_fields(info))
        entry.seed = event.seed
        output = numbered_output(self.output, event.index, request.count) if self.output else None
        try:
            path = self.history.save_image(event.image, request, event.seed, event.index, entry, info, output,
                                           self.outputs_dir)
        except OSError as error:
            self._record_save_failure(event, error)
            raise
        log.info("image %d/%d saved: seed %d, %.1f s, %.2f it/s, %s", event.index + 1, request.count, event.seed,
                 timings.total_s, timings.it_per_s, path)
        self.saved.append(path)
        return path

    def _record_save_failure(self, event: Finished, error: OSError) -> None:
        """A row that keeps the seed, so the lost image can be made again once there is room."""
        entry = HistoryEntry.for_request(event.request, "failed", image_index=event.index,
                                         error=save_failure_message(error))
        entry.seed = event.seed
        try:
            self.history.add(entry)
        except Exception as second:  # the database may be on the same full disk
            log.error("recording the failed save in history failed too: %s", second)


def save_failure_message(error: OSError) -> str:
    """One line: what went wrong and where, e.g. 'saving failed: No space left on device (/x/y.png)'."""
    return f"saving failed: {error.strerror or error} ({error.filename or 'outputs'})"
