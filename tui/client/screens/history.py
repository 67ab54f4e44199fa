"""The history screen: every generation, newest first, searchable and filterable, with a
large view of the selected image and all its parameters, and keys to reuse it.

Rows load in pages as the cursor nears the end, and the list shows only text, so
10,000 entries open as fast as 200; the selected image is decoded only once the
cursor rests on it.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Header, Input, Static

from tui.client.messages import JobDone, OpenViewer
from tui.client.widgets.footer import FittingFooter
from tui.client.screens.entry_actions import ENTRY_BINDINGS, EntryActions
from tui.client.session import read_image
from tui.store.history import STATUSES, HistoryEntry
from tui.text import clip, visible
from tui.client.widgets.details import details_table, entry_status
from tui.client.widgets.thumbnail import OpenablePicture
from tui.client.widgets.safe_input import SafeInput
from tui.client.widgets.status import StatusPanel

PAGE = 200
# (name, width) in the order shown; the prompt takes what is left, within PROMPT_WIDTH.
COLUMNS = (("mark", 1), ("time", 11), ("prompt", 0), ("seed", 10), ("steps", 5), ("size", 9),
           ("scheduler", 18), ("model", 16), ("status", 9), ("duration", 8))
# Which columns stay when the list is narrow, most useful first (the detail pane shows all).
PRIORITY = ("mark", "time", "prompt", "seed", "status", "size", "steps", "scheduler", "model", "duration")
PROMPT_WIDTH = (14, 40)
CELL_PADDING = 2  # DataTable's padding either side of a cell


def fit_columns(width: int) -> list[tuple[str, int]]:
    """The columns that fit ``width`` cells, each with its width: the prompt gets what the
    others leave (at least its minimum), and a column that does not fit is left out whole
    rather than cut mid-value."""
    sizes = dict(COLUMNS)
    chosen, used = [], 0
    for name in PRIORITY:
        need = (PROMPT_WIDTH[0] if name == "prompt" else sizes[name]) + CELL_PADDING
        if used + need <= width or name in ("mark", "time", "prompt"):
            chosen.append(name)
            used += need
    spare = max(0, width - used)
    widths = {name: sizes[name] for name in chosen}
    widths["prompt"] = min(PROMPT_WIDTH[1], PROMPT_WIDTH[0] + spare)
    return [(name, widths[name]) for name, _ in COLUMNS if name in widths]


def row_cells(entry: HistoryEntry, columns: list[tuple[str, int]], marked: bool = False) -> tuple:
    values = {
        "mark": "●" if marked else "",
        "time": entry.created_at.replace("T", " ")[5:16],
        "prompt": visible(entry.prompt),
        "seed": "" if entry.seed is None else str(entry.seed),
        "steps": str(entry.steps),
        "size": f"{entry.width}x{entry.height}",
        "scheduler": entry.scheduler,
        "model": visible(entry.model),
        "status": entry_status(entry),
        "duration": "" if entry.total_s is None else f"{entry.total_s:.1f}s",
    }
    return tuple(Text(clip(values[name], width), style="bold yellow" if name == "mark" else "")
                 for name, width in columns)


def follow_jobs(screens, message, session) -> None:
    """Every open history screen among ``screens`` follows ``message`` (an ImageSaved, a JobDone
    or the status panel's Progressed)."""
    for screen in screens:
        if isinstance(screen, HistoryScreen):
            screen.follow(message, session)


def progress_line(report, session) -> str:
    """The running job's progress (``report``: its latest Step) in one line."""
    job, making = session.running, session.making
    images = making.count if making is not None else 1
    text = f"generating{f' job {job}' if job is not None else ''}: step {report.step}/{report.total}"
    if images > 1:
        text += f", image {report.image_index + 1} of {images}"
    if session.waiting:
        text += f" · {session.waiting} waiting"
    return text


class HistoryScreen(EntryActions, Screen):
    DEFAULT_CSS = """
    HistoryScreen #filters { height: 1; }
    HistoryScreen #search { width: 1fr; }
    HistoryScreen #filter-text { width: auto; padding: 0 1; }
    HistoryScreen #list { width: 3fr; }
    HistoryScreen #detail { width: 2fr; border-left: solid $primary-darken-2; }
    HistoryScreen #large { height: 1fr; min-height: 6; }
    HistoryScreen #params { height: auto; max-height: 50%; }
    HistoryScreen #progress { height: 1; padding: 0 1; display: none; }
    """
    BINDINGS = [
        Binding("escape", "back", "Back", id="history-back"),
        Binding("slash", "search", "Search", id="history-search"),
        Binding("enter,l", "load", "Load into prompt", id="history-load"),
        Binding("o", "view", "View", id="history-view"),
        *ENTRY_BINDINGS,
        Binding("s", "cycle_status", "Status filter", id="history-status"),
        Binding("m", "cycle_model", "Model filter", id="history-model"),
        Binding("p", "show_path", "Show path", id="history-path"),
        Binding("space", "mark", "Mark to compare", id="history-mark"),
        Binding("equals_sign", "compare", "Compare", id="history-compare"),
        Binding("i", "import_png", "Import PNG", id="history-import"),
    ]
    AUTO_FOCUS = None  # focus is set in on_mount, before the first frame, so a quick "/" is never undone

    def __init__(self, history, select_id: int | None = None) -> None:
        super().__init__()
        self.history = history
        self.select_id = select_id
        self.entries: list[HistoryEntry] = []
        self.total = 0
        self.text = ""
        self.status: str | None = None
        self.model: str | None = None
        self.marked: list[int] = []
        self.columns: list[tuple[str, int]] = []
        self._detail_timer = None
        self._search_timer = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="filters"):
            yield SafeInput(placeholder="search prompts (/)", id="search", compact=True)
            yield Static(id="filter-text")
        with Horizontal():
            with Vertical(id="list"):
                yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
            with Vertical(id="detail"):
                yield OpenablePicture(placeholder="no entry selected", id="large")
                with VerticalScroll(id="params"):
                    yield Static(id="param-text")
        yield Static(id="progress")
        yield FittingFooter(compact=True)

    def on_mount(self) -> None:
        # set_focus now, not focus(), which defers it: the search box must never look focused first.
        self.set_focus(self.query_one("#table", DataTable))
        self._fit_columns(self.app.size.width * 3 // 5)
        self.reload()

    def on_resize(self) -> None:
        list_width = self.query_one("#list").size.width
        if list_width and self._fit_columns(list_width):
            self.reload()

    def _fit_columns(self, width: int) -> bool:
        """Lay the columns out for ``width``; True when they changed (the rows need redrawing)."""
        columns = fit_columns(width - 2)  # the vertical scrollbar
        if columns == self.columns:
            return False
        self.columns = columns
        table = self.query_one("#table", DataTable)
        table.clear(columns=True)
        for name, size in columns:
            table.add_column("" if name == "mark" else name, key=name, width=size)
        return True

    # --- loading rows -----------------------------------------------------------------

    def reload(self) -> None:
        table = self.query_one("#table", DataTable)
        row = table.cursor_row
        table.clear()
        self.entries = []
        self.total = self.history.count_matching(self.text, self.status, self.model)
        self._load_page()
        self._show_filters()
        if self.select_id is not None:
            self._move_to(self.select_id)
            self.select_id = None
        elif self.entries and row:
            table.move_cursor(row=min(row, len(self.entries) - 1))
        self._show_params()
        self._show_image()

    def _load_page(self) -> None:
        page = self.history.query(self.text, self.status, self.model, limit=PAGE, offset=len(self.entries))
        table = self.query_one("#table", DataTable)
        for entry in page:
            table.add_row(*row_cells(entry, self.columns, entry.id in self.marked), key=str(entry.id))
        self.entries.extend(page)

    def go_to_entry(self, entry: HistoryEntry) -> None:
        """Select ``entry``, clearing the filters when they hide it."""
        self._move_to(entry.id)
        if self.selected is None or self.selected.id != entry.id:
            self.text, self.status, self.model = "", None, None
            self.select_id = entry.id
            self.reload()
        else:
            self._show_params()

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
        parts.append(f"strength: {self.app.session.strength:g} ([ ])")
        self.query_one("#filter-text", Static).update(Text("  ".join(parts), style="dim"))

    def strength_changed(self) -> None:
        self._show_filters()

    def history_changed(self) -> None:
        """A job wrote rows (an image, or a cancelled or failed job): show them, the selected entry
        staying selected."""
        chosen = self.selected
        self.select_id = chosen.id if chosen is not None else None
        self.reload()

    def follow(self, message, session) -> None:
        """While open, the screen follows the jobs: the rows each saved image or ended job wrote, and
        the running job's progress in a line under the list, hidden once the queue is empty."""
        if isinstance(message, StatusPanel.Progressed):
            self.show_progress(progress_line(message.report, session))
            return
        self.history_changed()
        if isinstance(message, JobDone) and session.waiting == 0:
            self.show_progress("")

    def show_progress(self, text: str) -> None:
        """One line under the list while jobs run (empty: hidden)."""
        line = self.query_one("#progress", Static)
        line.update(Text(text, style="dim"))
        line.display = bool(text)

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
        lineage = self.history.lineage(entry) if entry is not None and entry.id is not None else None
        self.query_one("#param-text", Static).update(details_table(entry, lineage=lineage) if entry is not None
                                                     else "")

    def _show_image(self) -> None:
        entry = self.selected
        large = self.query_one("#large", OpenablePicture)
        if entry is None:
            large.clear("no entries" if not self.total else "no entry selected")
            return
        if entry.status != "done":
            large.clear(f"no image: {entry.status}")
            return
        image = read_image(entry.image_path)
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

    def entry_deleted(self, entry: HistoryEntry) -> None:
        self.marked = [m for m in self.marked if m != entry.id]
        self.reload()

    def action_view(self) -> None:
        entry = self._need_selection()
        if entry:
            self.post_message(OpenViewer(entry))

    @on(OpenablePicture.Opened, "#large")
    def _large_opened(self) -> None:
        self.action_view()

    def action_mark(self) -> None:
        entry = self._need_selection()
        if not entry:
            return
        if entry.id in self.marked:
            self.marked.remove(entry.id)
        elif len(self.marked) >= 2:
            self.app.notify("Two entries are marked already: press space on one to unmark it, or = to compare.",
                            timeout=4)
            return
        else:
            self.marked.append(entry.id)
        if "mark" in dict(self.columns):
            self.query_one("#table", DataTable).update_cell(
                str(entry.id), "mark", Text("●" if entry.id in self.marked else "", style="bold yellow"))
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
        from tui.client.screens.compare import CompareScreen

        self.app.push_screen(CompareScreen(first, second))

    def action_import_png(self) -> None:
        self.app.palette.import_png()
