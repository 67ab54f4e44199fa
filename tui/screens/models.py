"""The model picker: every model already on this machine (Hugging Face cache, the models
folder, recently used, the demo) with its family, size and place; type to filter, or type a
Hub id or a path that is not listed to load (and if need be download) it.

The catalog is built in a thread: scanning a large cache reads many small files.
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

from tui.engine.catalog import CatalogEntry, build_catalog, hub_cache_dir
from tui.engine.memory import format_bytes
from tui.text import visible
from tui.widgets.safe_input import SafeInput

TYPED = "typed"


def _looks_like_model(text: str) -> bool:
    text = text.strip()
    if not text:
        return False
    return Path(text).expanduser().exists() or (text.count("/") == 1 and not text.startswith(("/", ".", "~")))


class ModelPickerScreen(ModalScreen[str | None]):
    DEFAULT_CSS = """
    ModelPickerScreen { align: center middle; }
    ModelPickerScreen #dialog { width: 90%; height: 80%; border: thick $primary; background: $surface;
                                padding: 0 1; }
    ModelPickerScreen #model-table { height: 1fr; }
    ModelPickerScreen #model-hint { color: $text-muted; height: auto; }
    """
    BINDINGS = [Binding("escape", "close", "Close"), Binding("down", "to_table", "Models", show=False)]

    def __init__(self, models_dir: Path, recent: list[str], current: str) -> None:
        super().__init__()
        self.models_dir, self.recent, self.current = models_dir, recent, current
        self.entries: list[CatalogEntry] = []
        self._shown: list[CatalogEntry | str] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("[b]Models[/b]: Enter loads the highlighted one, Esc closes")
            yield SafeInput(placeholder="filter, or type a Hub id (owner/name) or a path to load it",
                        id="model-filter", compact=True)
            yield DataTable(id="model-table", cursor_type="row", zebra_stripes=True)
            yield Static(f"looking in the Hugging Face cache and {self.models_dir}…", id="model-hint")
        yield Footer(compact=True)  # this dialog's own keys, over the screen's below

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("", "model", "family", "size", "where")
        self.query_one("#model-filter", Input).focus()
        self._scan()

    @work(thread=True, exclusive=True)
    def _scan(self) -> None:
        from tui.engine.download import remove_stale_partials

        if hub_cache_dir().is_dir():
            remove_stale_partials(hub_cache_dir())
        entries = build_catalog(self.models_dir, self.recent)
        self.app.call_from_thread(self._scanned, entries)

    def _scanned(self, entries: list[CatalogEntry]) -> None:
        self.entries = entries
        hint = (f"{len(entries)} models. Hugging Face cache: {hub_cache_dir()}. Models folder: {self.models_dir} "
                "(put diffusers folders and .safetensors checkpoints there; set models_dir in config.toml to "
                "use another).")
        self.query_one("#model-hint", Static).update(Text(hint))
        self._fill(self.query_one("#model-filter", Input).value)

    def _fill(self, text: str) -> None:
        table = self.query_one(DataTable)
        table.clear()
        needle = text.strip().casefold()
        shown: list[CatalogEntry | str] = []
        if _looks_like_model(text) and not any(e.ref == text.strip() for e in self.entries):
            shown.append(text.strip())
        shown += [e for e in self.entries
                  if not needle or needle in f"{e.name} {e.family_label} {e.where.split(' (')[0]}".casefold()]
        self._shown = shown
        for item in shown:
            if isinstance(item, str):
                table.add_row("→", Text(f"load {visible(item)}"), "", "", "typed", key=TYPED)
                continue
            mark = "●" if item.ref == self.current else ("★" if item.recent else "")
            name = Text(visible(item.name))
            if item.note:
                name.append(f"  ({visible(item.note)})", style="dim")
            size = format_bytes(item.size_bytes) if item.size_bytes else ""
            where = item.where.split(" (")[0]  # the folders themselves are named in the hint below
            table.add_row(mark, name, item.family_label, size, Text(visible(where), style="dim"))

    @on(Input.Changed, "#model-filter")
    def _filter(self, event: Input.Changed) -> None:
        self._fill(event.value)

    @on(Input.Submitted, "#model-filter")
    def _submitted(self, event: Input.Submitted) -> None:
        table = self.query_one(DataTable)
        if self._shown:
            self._pick(table.cursor_row)
        elif event.value.strip():
            self.query_one("#model-hint", Static).update(Text(
                f"model: nothing here matches {visible(event.value.strip())!r}; type a Hub id like owner/name "
                "or the path of an existing folder or .safetensors file", style="bold red"))

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        self._pick(event.cursor_row)

    def _pick(self, row: int) -> None:
        if not 0 <= row < len(self._shown):
            return
        item = self._shown[row]
        self.dismiss(item if isinstance(item, str) else item.ref)

    def action_to_table(self) -> None:
        self.query_one(DataTable).focus()

    def action_close(self) -> None:
        self.dismiss(None)
