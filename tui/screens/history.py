"""The history screen: every generation, newest first, searchable and filterable, with a
large view of the selected image and all its parameters, and keys to reuse it.

Rows load in pages as the cursor nears the end, and the list shows only text, so
10,000 entries open as fast as 200; the selected image is decoded only once the
cursor rests on it.
"""

from __future__ import annotations

from dataclasses import replace

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from tui.store.history import STATUSES, HistoryEntry
from tui.text import visible
from tui.widgets.details import details_table, entry_status
from tui.widgets.thumbnail import Thumbnail
from tui.widgets.safe_input import SafeInput

PAGE = 200
COLUMNS = ("time", "prompt", "seed", "steps", "size", "scheduler", "model", "status", "duration")


def row_cells(entry: HistoryEntry) -> tuple:
    prompt = visible(entry.prompt)
    return (
        entry.created_at.replace("T", " ")[5:16],
        Text(prompt if len(prompt) <= 30 else prompt[:29] + "…"),
        "" if entry.seed is None else str(entry.seed),
        str(entry.steps),
        f"{entry.width}x{entry.height}",
        entry.scheduler,
        Text(visible(entry.model if len(entry.model) <= 16 else entry.model[:15] + "…")),
        entry_status(entry),
        "" if entry.total_s is None else f"{entry.total_s:.1f}s",
    )


class HistoryScreen(Screen):
    DEFAULT_CSS = """
    HistoryScreen #filters { height: 1; }
    HistoryScreen #search { width: 1fr; }
    HistoryScreen #filter-text { width: auto; padding: 0 1; }
    HistoryScreen #list { width: 3fr; }
    HistoryScreen #detail { width: 2fr; border-left: solid $primary-darken-2; }
    HistoryScreen #large { height: 1fr; min-height: 6; }
    HistoryScreen #params { height: auto; max-height: 50%; }
    """
    BINDINGS = [
        Binding("escape", "back", "Back", id="history-back"),
        Binding("slash", "search", "Search", id="history-search"),
        Binding("enter,l", "load", "Load into prompt", id="history-load"),
        Binding("r", "rerun", "Re-run", id="history-rerun"),
        Binding("v", "variations", "Variations", id="history-variations"),
        Binding("d,delete", "delete", "Delete", id="history-delete"),
        Binding("s", "cycle_status", "Status filter", id="history-status"),
        Binding("m", "cycle_model", "Model filter", id="history-model"),
        Binding("c", "copy_path", "Copy path", id="history-copy"),
        Binding("p", "show_path", "Show path", id="history-path"),
        Binding("space", "mark", "Mark to compare", id="history-mark"),
        Binding("equals_sign", "compare", "Compare", id="history-compare"),
        Binding("i", "import_png", "Import PNG", id="history-import"),
    ]
    VARIATIONS = 4
    AUTO_FOCUS = None  # focus is set in on_mount, before the first frame, so a quick "/" is never undone

    def __init__(self, select_id: int | None = None) -> None:
        super().__init__()
        self.select_id = select_id
        self.entries: list[HistoryEntry] = []
        self.total = 0
        self.text = ""
        self.status: str | None = None
        self.model: str | None = None
        self.marked: list[int] = []
        self._detail_timer = None
        self._search_timer = None

    @property
    def history(self):
        return self.app.history

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="filters"):
            yield SafeInput(placeholder="search prompts (/)", id="search", compact=True)
            yield Static(id="filter-text")
        with Horizontal():
            with Vertical(id="list"):
                table = DataTable(id="table", cursor_type="row", zebra_stripes=True)
                for column in COLUMNS:
                    table.add_column(column, key=column)
                yield table
            with Vertical(id="detail"):
                yield Thumbnail(placeholder="no entry selected", id="large")
                with VerticalScroll(id="params"):
                    yield Static(id="param-text")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#table", DataTable).focus()
        self.reload()

    # --- loading rows -----------------------------------------------------------------

    def reload(self) -> None:
        table = self.query_one("#table", DataTable)
        table.clear()
        self.entries = []
        self.total = self.history.count_matching(self.text, self.status, self.model)
        self._load_page()
        self._show_filters()
        if self.select_id is not None:
            self._move_to(self.select_id)
            self.select_id = None
        self._show_params()
        self._show_image()

    def _load_page(self) -> None:
        page = self.history.query(self.text, self.status, self.model, limit=PAGE, offset=len(self.entries))
        table = self.query_one("#table", DataTable)
        for entry in page:
            table.add_row(*row_cells(entry), key=str(entry.id))
        self.entries.extend(page)

    def _move_to(self, entry_id: int) -> None:
        while not any(e.id == entry_id for e in self.entries) and len(self.entries) < self.total:
            self._load_page()
        for index, entry in enumerate(self.entries):
            if entry.id == entry_id:
                self.query_one("#table", DataTable).move_cursor(row=index)
                return

    def _show_filters(self) -> None:
        parts = [f"{self.total} entr{'y' if self.total == 1 else 'ies'}"]
        parts.append(f"status: {self.status or 'all'} (s)")
        parts.append(f"model: {visible(self.model) if self.model else 'all'} (m)")
        if self.marked:
            parts.append(f"marked: {len(self.marked)}")
        self.query_one("#filter-text", Static).update(Text("  ".join(parts), style="dim"))

    @property
    def selected(self) -> HistoryEntry | None:
        table = self.query_one("#table", DataTable)
        if not self.entries or table.cursor_row is None or table.cursor_row >= len(self.entries):
            return None
        return self.entries[table.cursor_row]

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row >= len(self.entries) - 20 and len(self.entries) < self.total:
            self._load_page()
        self._show_params()
        if self._detail_timer is not None:
            self._detail_timer.stop()
        self._detail_timer = self.set_timer(0.12, self._show_image)  # decode only once the cursor rests

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_load()

    def _show_params(self) -> None:
        entry = self.selected
        self.query_one("#param-text", Static).update(details_table(entry) if entry is not None else "")

    def _show_image(self) -> None:
        entry = self.selected
        large = self.query_one("#large", Thumbnail)
        if entry is None:
            large.clear("no entries" if not self.total else "no entry selected")
            return
        if entry.status != "done":
            large.clear(f"no image: {entry.status}")
            return
        image = self.app.load_image(entry.image_path)
        if image is None:
            large.clear("image file missing")
        else:
            large.show(image)

    # --- search and filters -------------------------------------------------------------

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.text = event.value
        if self._search_timer is not None:
            self._search_timer.stop()
        self._search_timer = self.set_timer(0.15, self.reload)

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#table", DataTable).focus()

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_back(self) -> None:
        search = self.query_one("#search", Input)
        if search.has_focus:
            self.query_one("#table", DataTable).focus()
        else:
            self.app.pop_screen()

    def action_cycle_status(self) -> None:
        order = [None, *STATUSES]
        self.status = order[(order.index(self.status) + 1) % len(order)]
        self.reload()

    def action_cycle_model(self) -> None:
        order = [None, *self.history.models()]
        self.model = order[(order.index(self.model) + 1) % len(order)] if self.model in order else None
        self.reload()

    # --- actions on the selected entry ----------------------------------------------------

    def _need_selection(self) -> HistoryEntry | None:
        entry = self.selected
        if entry is None:
            self.app.notify("No entry selected.", timeout=3)
        return entry

    def action_load(self) -> None:
        entry = self._need_selection()
        if entry:
            self.app.main_screen.load_request(entry.request())
            self.app.pop_screen()
            self.app.notify("Prompt and settings loaded from history.", timeout=3)

    def action_rerun(self) -> None:
        entry = self._need_selection()
        if entry:
            number = self.app.service.submit(entry.request())
            self.app.notify(f"Job {number} queued: the same image again (seed {entry.seed}).", timeout=3)

    def action_variations(self) -> None:
        entry = self._need_selection()
        if entry:
            request = replace(entry.request(), seed=None, count=self.VARIATIONS)
            number = self.app.service.submit(request)
            self.app.notify(f"Job {number} queued: {self.VARIATIONS} variations with new seeds.", timeout=3)

    def action_delete(self) -> None:
        entry = self._need_selection()
        if not entry:
            return
        from tui.screens.confirm import ConfirmScreen

        what = "the entry and its image file" if entry.image_path else "the entry"

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            row = self.query_one("#table", DataTable).cursor_row
            self.history.delete(entry.id)
            self.marked = [m for m in self.marked if m != entry.id]
            self.reload()
            if self.entries:
                self.query_one("#table", DataTable).move_cursor(row=min(row, len(self.entries) - 1))
            self.app.notify("Deleted.", timeout=2)

        self.app.push_screen(ConfirmScreen(f"Delete {what}?\n{visible(entry.prompt)[:200]}"), answered)

    def action_copy_path(self) -> None:
        entry = self._need_selection()
        if entry and entry.image_path:
            self.app.copy_to_clipboard(entry.image_path)
            self.app.notify(f"Copied {entry.image_path}", timeout=4)

    def action_show_path(self) -> None:
        entry = self._need_selection()
        if entry:
            where = entry.image_path or "no file (the job did not finish)"
            self.app.notify(where, title="image path", timeout=10)

    def action_mark(self) -> None:
        entry = self._need_selection()
        if not entry:
            return
        if entry.id in self.marked:
            self.marked.remove(entry.id)
        else:
            self.marked = (self.marked + [entry.id])[-2:]
        self._show_filters()

    def action_compare(self) -> None:
        ids = list(self.marked)
        entry = self.selected
        if len(ids) < 2 and entry is not None and entry.id not in ids:
            ids.append(entry.id)
        if len(ids) < 2:
            self.app.notify("Mark two entries with space, then press = to compare.", timeout=4)
            return
        first, second = (self.history.get(i) for i in ids[:2])
        if first is None or second is None:
            return
        from tui.screens.compare import CompareScreen

        self.app.push_screen(CompareScreen(first, second))

    def action_import_png(self) -> None:
        self.app.action_import_png()
