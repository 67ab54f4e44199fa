"""A strip of the most recent results as small block thumbnails; Enter or a click on one
opens it in the history screen."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message

from tui.client.widgets.thumbnail import Thumbnail

STRIP_SIZE = 6


class StripItem(Thumbnail):
    real_pixels = False  # a few cells: half blocks show them as well, for a fraction of the bytes
    can_focus = True
    DEFAULT_CSS = """
    StripItem { width: 1fr; height: 1fr; margin: 0 1 0 0; }
    StripItem:focus { tint: $accent 40%; }
    """
    BINDINGS = [Binding("enter", "open", "Open in history", id="strip-open")]

    class Opened(Message):
        def __init__(self, entry_id: int) -> None:
            super().__init__()
            self.entry_id = entry_id

    def __init__(self, **kwargs) -> None:
        super().__init__(placeholder="", **kwargs)
        self.entry_id: int | None = None

    def action_open(self) -> None:
        if self.entry_id is not None:
            self.post_message(self.Opened(self.entry_id))

    def on_click(self) -> None:
        self.action_open()


class RecentStrip(Horizontal):
    DEFAULT_CSS = """
    RecentStrip { height: 4; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._cells: list[StripItem] = []  # made with the first image, then kept

    def on_mount(self) -> None:
        self.tooltip = Text("Enter or click: open in history")

    def show(self, items: list[tuple[int, object]]) -> None:
        """``items``: (entry id, small image or None), newest first. The cells are made with the
        first image: an empty history starts with none, which keeps the first frame light."""
        if not self._cells:
            if not items:
                return
            self._cells = [StripItem(id=f"recent-{index}") for index in range(STRIP_SIZE)]
            self.mount_all(self._cells)
        cells = self._cells
        for cell, item in zip(cells, items + [None] * len(cells)):
            if item is None:
                cell.entry_id = None
                cell.clear("")
            else:
                cell.entry_id, image = item
                if image is None:
                    cell.clear("missing")
                else:
                    cell.show(image)
