"""The LoRA and embedding picker: what the models folder's ``loras/`` and ``embeddings/`` hold,
with the family each fits; Enter puts ``<lora:name:0.8>`` (or an embedding's name) into the prompt.

The folders are read in a thread: each file's header is a small read, but there may be hundreds.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Label, Static

from tui.engine.memory import format_bytes
from tui.engine.networks import EMBEDDINGS, LORAS, NetworkFile, lora_tag, network_files
from tui.text import visible
from tui.widgets.safe_input import SafeInput

PICKED_WEIGHT = 0.8  # a LoRA at full weight often overpowers a prompt; 0.8 is the usual start


def prompt_text(item: NetworkFile) -> str:
    """What the picker puts into the prompt for ``item``."""
    return lora_tag(item.name, PICKED_WEIGHT) if item.kind == LORAS else item.name


def fits(item: NetworkFile, model_family: str) -> bool | None:
    """Whether ``item`` fits a model of ``model_family`` (a label such as "SD 1.x"); None when
    either is unknown."""
    if not model_family or not item.family or item.family.startswith("width"):
        return None
    return item.family == model_family


class NetworkPickerScreen(ModalScreen[str | None]):
    DEFAULT_CSS = """
    NetworkPickerScreen { align: center middle; }
    NetworkPickerScreen #dialog { width: 90%; height: 80%; border: thick $primary; background: $surface;
                                  padding: 0 1; }
    NetworkPickerScreen #network-table { height: 1fr; }
    NetworkPickerScreen #network-hint { color: $text-muted; height: auto; }
    """
    BINDINGS = [Binding("escape", "close", "Close"), Binding("down", "to_table", "List", show=False)]

    def __init__(self, models_dir: Path, model_family: str, allow_pickle: bool = False) -> None:
        super().__init__()
        self.models_dir, self.model_family, self.allow_pickle = models_dir, model_family, allow_pickle
        self.items: list[NetworkFile] = []
        self._shown: list[NetworkFile] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("[b]LoRAs and embeddings[/b]: Enter puts the highlighted one into the prompt, Esc closes")
            yield SafeInput(placeholder="filter by name or family", id="network-filter", compact=True)
            yield DataTable(id="network-table", cursor_type="row", zebra_stripes=True)
            yield Static(f"looking in {self.models_dir / LORAS} and {self.models_dir / EMBEDDINGS}…",
                         id="network-hint")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("", "name", "kind", "family", "size")
        self.query_one("#network-filter", Input).focus()
        self._scan()

    @work(thread=True, exclusive=True)
    def _scan(self) -> None:
        items = [*network_files(self.models_dir / LORAS, LORAS, self.allow_pickle),
                 *network_files(self.models_dir / EMBEDDINGS, EMBEDDINGS, self.allow_pickle)]
        self.app.call_from_thread(self._scanned, items)

    def _scanned(self, items: list[NetworkFile]) -> None:
        # What fits the loaded model first, then what may, then the rest; by name within each.
        order = {True: 0, None: 1, False: 2}
        self.items = sorted(items, key=lambda i: (order[fits(i, self.model_family)], i.name.casefold()))
        loras = sum(1 for i in items if i.kind == LORAS)
        model = f"the loaded model is {self.model_family}" if self.model_family else "no model is loaded yet"
        hint = (f"{loras} LoRAs in {self.models_dir / LORAS}, {len(items) - loras} embeddings in "
                f"{self.models_dir / EMBEDDINGS}; {model}. ✓ fits it, ✗ is for another family. "
                f"A LoRA goes in as <lora:name:{PICKED_WEIGHT:g}>: edit the weight in the prompt.")
        self.query_one("#network-hint", Static).update(Text(hint))
        self._fill(self.query_one("#network-filter", Input).value)

    def _fill(self, text: str) -> None:
        table = self.query_one(DataTable)
        table.clear()
        needle = text.strip().casefold()
        self._shown = [i for i in self.items if not needle or needle in f"{i.name} {i.label} {i.kind}".casefold()]
        for item in self._shown:
            fit = fits(item, self.model_family)
            mark = Text("✓", style="green") if fit else Text("✗", style="red") if fit is False else Text("")
            name = Text(visible(item.name))
            if item.problem:
                name.append(f"  ({visible(item.problem)})", style="dim")
            size = format_bytes(item.path.stat().st_size) if item.path.exists() else ""
            table.add_row(mark, name, "LoRA" if item.kind == LORAS else "embedding", item.label, size)

    @on(Input.Changed, "#network-filter")
    def _filter(self, event: Input.Changed) -> None:
        self._fill(event.value)

    @on(Input.Submitted, "#network-filter")
    def _submitted(self, _event: Input.Submitted) -> None:
        self._pick(self.query_one(DataTable).cursor_row)

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        self._pick(event.cursor_row)

    def _pick(self, row: int) -> None:
        if 0 <= row < len(self._shown):
            self.dismiss(prompt_text(self._shown[row]))

    def action_to_table(self) -> None:
        self.query_one(DataTable).focus()

    def action_close(self) -> None:
        self.dismiss(None)
