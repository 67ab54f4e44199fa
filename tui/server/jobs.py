"""What happens to a job's results: every finished image is saved with its history row,
and a cancelled or failed job leaves a row saying so. Shared by the CLI and the app."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from tui.engine.events import Cancelled, Event, Failed, Finished
from tui.store.history import TEMP_SUFFIX, History, HistoryEntry, info_fields

log = logging.getLogger("tui.server.jobs")


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
    # What runs the job (the engine's ``describe()``): its model and device go on every row, so a
    # cancelled or failed job shows under its model too. Empty until a model is loaded.
    info: dict = field(default_factory=dict)
    saved: list[Path] = field(default_factory=list)

    def __call__(self, event: Event) -> Path | None:
        """Record ``event`` if it ends an image or a job; returns the saved path for a finished image."""
        if isinstance(event, Finished):
            return self._save(event)
        if isinstance(event, Cancelled):
            self.history.add(HistoryEntry.for_request(event.request, "cancelled", error=event.message,
                                                      image_index=event.completed, **info_fields(self.info)))
        elif isinstance(event, Failed) and event.request is not None:
            self.history.add(HistoryEntry.for_request(event.request, "failed", error=event.message,
                                                      image_index=event.completed, **info_fields(self.info)))
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
            failure = ImageNotSaved(save_failure_message(error, output or self.outputs_dir or self.history.outputs_dir))
            self._record_save_failure(event, str(failure))
            raise failure from error
        log.info("image %d/%d saved: seed %d, %.1f s, %.2f it/s, %s", event.index + 1, request.count, event.seed,
                 timings.total_s, timings.it_per_s, path)
        self.saved.append(path)
        return path

    def _record_save_failure(self, event: Finished, message: str) -> None:
        """A row that keeps the seed, so the lost image can be made again once there is room."""
        entry = HistoryEntry.for_request(event.request, "failed", image_index=event.index, error=message,
                                         **info_fields(event.info or self.info))
        entry.seed = event.seed
        try:
            self.history.add(entry)
        except Exception as second:  # the database may be on the same full disk
            log.error("recording the failed save in history failed too: %s", second)


class ImageNotSaved(OSError):
    """A finished image could not be written; the message is the one line to show."""


def save_failure_message(error: OSError, target: Path | None = None) -> str:
    """One line: what went wrong and where, e.g. 'saving failed: No space left on device (/x/y.png)':
    the file's own name, never the temporary one an image is written under first; ``target``
    (where the image was going) when the error names no file."""
    if isinstance(error, ImageNotSaved):
        return str(error)
    where = final_name(error.filename) if error.filename else str(target or "outputs")
    return f"saving failed: {error.strerror or error} ({where})"


def final_name(path: str | Path) -> str:
    """The path an image is saved to, for the temporary name it is written under first
    (``.fox.png.123-abcd.partial`` is ``fox.png``); any other path as it is."""
    path = Path(path)
    if not (path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)):
        return str(path)
    name = path.name[1:-len(TEMP_SUFFIX)].rpartition(".")[0]  # the process and random part go
    return str(path.with_name(name)) if name else str(path)
