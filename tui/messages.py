"""Textual messages carrying the generation service's reports to the interface.

The worker thread posts them (``post_message`` is thread-safe); handlers on the UI
side own every state change. Step reports coalesce: a newer step replaces a waiting
older one, unless that would drop a preview, so a fast GPU cannot flood the UI.
"""

from __future__ import annotations

from textual.message import Message

from tui.engine.events import Step


class EngineReport(Message):
    def __init__(self, report: object) -> None:
        super().__init__()
        self.report = report


class StepReport(EngineReport):
    def can_replace(self, message: Message) -> bool:
        if not isinstance(message, StepReport):
            return False
        mine: Step = self.report  # type: ignore[assignment]
        newer: Step = message.report  # type: ignore[assignment]
        return newer.preview is not None or mine.preview is None


class LogLine(Message):
    """A line for the live log, from Python logging on any thread."""

    def __init__(self, level: str, text: str, created: float) -> None:
        super().__init__()
        self.level = level
        self.text = text
        self.created = created


def wrap(report: object) -> EngineReport:
    return StepReport(report) if isinstance(report, Step) else EngineReport(report)
