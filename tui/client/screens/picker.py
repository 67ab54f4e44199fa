"""A dialog that lists things found on disk (read in a thread), filters them as you type, and
returns the one picked with Enter: the base of the model picker and the LoRA picker."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, Static

from tui.client.widgets.footer import FittingFooter
from tui.client.widgets.safe_input import SafeInput


class PickerScreen(ModalScreen[str | None]):
    DEFAULT_CSS = """
    PickerScreen { align: center middle; }
    PickerScreen #dialog { width: 100%; max-width: 160; margin: 0 2; height: 80%; border: thick $primary;
                           background: $surface; padding: 0 1; }
    PickerScreen #picker-table { height: 1fr; }
    PickerScreen #picker-hint { color: $text-muted; height: auto; }
    """
    BINDINGS = [Binding("escape", "close", "Close"), Binding("down", "to_table", "List", show=False)]
    TITLE = ""  # the dialog's first line (markup)
    PLACEHOLDER = ""
    COLUMNS: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.items: list[Any] = []  # everything found
        self._shown: list[Any] = []  # what the filter lets through, row by row

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.TITLE)
            yield SafeInput(placeholder=self.PLACEHOLDER, id="picker-filter", compact=True)
            yield DataTable(id="picker-table", cursor_type="row", zebra_stripes=True)
            yield Static(self.looking_in(), id="picker-hint")
        yield FittingFooter(compact=True)  # this dialog's own keys, over the screen's below

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*self.COLUMNS)
        self.query_one("#picker-filter", Input).focus()
        self._scan()

    # --- what a picker supplies -------------------------------------------------------------

    def looking_in(self) -> str:
        """The hint while the list is being read."""
        return ""

    def scan(self) -> tuple[list[Any], str]:
        """The items and the hint to show under them; runs in a thread."""
        raise NotImplementedError

    def shown(self, text: str, needle: str) -> list[Any]:
        """What to list for the filter ``text`` (``needle``: stripped and case-folded)."""
        raise NotImplementedError

    def row(self, item: Any) -> tuple:
        raise NotImplementedError

    def result(self, item: Any) -> str | None:
        """What picking ``item`` returns; None keeps the dialog open (the picker has said why)."""
        raise NotImplementedError

    def nothing_matches(self, text: str) -> None:
        """Enter with nothing listed."""

    # --- the rest is shared -------------------------------------------------------------------

    @work(thread=True, exclusive=True)
    def _scan(self) -> None:
        items, hint = self.scan()
        self.app.call_from_thread(self._scanned, items, hint)

    def _scanned(self, items: list[Any], hint: str) -> None:
        self.items = items
        self.hint(hint)
        self.fill(self.query_one("#picker-filter", Input).value)

    def hint(self, text: str, style: str = "") -> None:
        self.query_one("#picker-hint", Static).update(Text(text, style=style))

    def fill(self, text: str) -> None:
        table = self.query_one(DataTable)
        table.clear()
        self._shown = self.shown(text, text.strip().casefold())
        for item in self._shown:
            table.add_row(*self.row(item))

    @on(Input.Changed, "#picker-filter")
    def _filter(self, event: Input.Changed) -> None:
        self.fill(event.value)

    @on(Input.Submitted, "#picker-filter")
    def _submitted(self, event: Input.Submitted) -> None:
        if self._shown:
            self._pick(self.query_one(DataTable).cursor_row)
        elif event.value.strip():
            self.nothing_matches(event.value.strip())

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        self._pick(event.cursor_row)

    def _pick(self, row: int) -> None:
        if 0 <= row < len(self._shown):
            result = self.result(self._shown[row])
            if result is not None:
                self.dismiss(result)

    def action_to_table(self) -> None:
        self.query_one(DataTable).focus()

    def action_close(self) -> None:
        self.dismiss(None)
