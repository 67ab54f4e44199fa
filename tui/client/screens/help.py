"""F1: the keys, generated from the bindings themselves, so the help cannot drift from them."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.client.widgets.footer import FittingFooter


KEY_NAMES = {"plus": "+", "minus": "-", "equals_sign": "=", "slash": "/", "question_mark": "?",
             "left_square_bracket": "[", "right_square_bracket": "]", "space": "Space"}


def key_names(binding: Binding) -> str:
    """Every key of the binding, as a person types it."""
    return ", ".join(KEY_NAMES.get(k.strip(), k.strip()) for k in binding.key.split(","))


def binding_rows(bindings: list[tuple[str, Binding]]) -> list[tuple[str, str, str]]:
    """(where, keys, description) for each described binding, in order; a key that does the
    same in several places is one row naming them all."""
    rows: dict[tuple[str, str], list[str]] = {}
    for where, binding in bindings:
        if not binding.description:
            continue
        places = rows.setdefault((key_names(binding), binding.description), [])
        for place in where.split(", "):
            if place not in places:
                places.append(place)
    return [(", ".join(places), keys, description) for (keys, description), places in rows.items()]


def every_binding(app_bindings) -> list[tuple[str, Binding]]:
    """(where, binding) for the app's keys (``app_bindings``) and every screen's, so F1 help lists
    them all, from the bindings."""
    from tui.client.screens.compare import CompareScreen
    from tui.client.screens.history import HistoryScreen
    from tui.client.screens.main import MainScreen
    from tui.client.screens.viewer import ViewerScreen
    from tui.client.widgets.prompt import PromptInput
    from tui.client.widgets.thumbnail import OpenablePicture

    def described(where: str, bindings) -> list[tuple[str, Binding]]:
        return [(where, b if isinstance(b, Binding) else Binding(*b)) for b in bindings]

    return [
        *described("anywhere", app_bindings),
        ("anywhere", Binding("ctrl+p", "command_palette", "Command palette")),
        *described("main", MainScreen.BINDINGS),
        *described("prompt", PromptInput.BINDINGS),
        ("prompt", Binding("enter", "submit", "Generate (queues while a job runs)")),
        *described("history", HistoryScreen.BINDINGS),
        *described("history, compare", OpenablePicture.BINDINGS),
        *described("compare", CompareScreen.BINDINGS),
        *described("viewer", ViewerScreen.BINDINGS),
    ]


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 72; max-height: 90%; border: thick $primary; background: $surface; }
    """
    BINDINGS = [Binding("escape,f1,q", "app.pop_screen", "Close help", id="close-help")]

    def __init__(self, bindings: list[tuple[str, Binding]]) -> None:
        super().__init__()
        self.rows = binding_rows(bindings)

    def compose(self) -> ComposeResult:
        table = Table(title="sdtui keys", expand=True, show_edge=False)
        table.add_column("key", style="bold")
        table.add_column("action")
        table.add_column("where", style="dim")
        for where, keys, description in self.rows:
            table.add_row(Text(keys), Text(description), Text(where))
        with VerticalScroll():
            yield Static(table)
            yield Static(Text("Ctrl+P opens the command palette: model, settings, image, log, outputs, queue.",
                              style="dim"))
        yield FittingFooter(compact=True)  # this dialog's own keys, over the screen's below
