"""A yes/no question in a modal; y or Enter confirms, n or Escape declines."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.client.widgets.footer import FittingFooter


class ConfirmScreen(ModalScreen[bool]):
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical { width: 70; height: auto; border: thick $error; background: $surface; padding: 1 2; }
    """
    BINDINGS = [
        Binding("y,enter", "answer(True)", "Yes", id="confirm-yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm-no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.question))
            yield Static(Text("y: yes   n: no", style="dim"))
        yield FittingFooter(compact=True)  # this dialog's own keys, over the screen's below

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
