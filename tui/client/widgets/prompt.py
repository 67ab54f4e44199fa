"""The prompt line: Enter generates, Up and Down recall earlier prompts (newest first),
including those from earlier runs, read from the history."""

from __future__ import annotations

from textual.binding import Binding
from tui.client.widgets.safe_input import SafeInput


class PromptRecall:
    """Newest-first recall over earlier prompts, like a shell's history."""

    def __init__(self, prompts: list[str] | None = None) -> None:
        self.prompts: list[str] = []
        for prompt in prompts or []:
            if prompt not in self.prompts:
                self.prompts.append(prompt)
        self.position = -1
        self.draft = ""

    def remember(self, prompt: str) -> None:
        if prompt in self.prompts:
            self.prompts.remove(prompt)
        self.prompts.insert(0, prompt)
        self.position = -1

    def older(self, current: str) -> str:
        if self.position == -1:
            self.draft = current
        if self.position + 1 < len(self.prompts):
            self.position += 1
            return self.prompts[self.position]
        return current

    def newer(self, current: str) -> str:
        if self.position <= 0:
            self.position = -1
            return self.draft if current in self.prompts or not current else current
        self.position -= 1
        return self.prompts[self.position]


class PromptInput(SafeInput):
    BINDINGS = [
        Binding("up", "older", "Earlier prompt", show=False),
        Binding("down", "newer", "Later prompt", show=False),
    ]

    def __init__(self, recall: PromptRecall, **kwargs) -> None:
        super().__init__(**kwargs)
        self.recall = recall

    def action_older(self) -> None:
        self.value = self.recall.older(self.value)
        self.cursor_position = len(self.value)

    def action_newer(self) -> None:
        self.value = self.recall.newer(self.value)
        self.cursor_position = len(self.value)
