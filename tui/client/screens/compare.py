"""Two history entries side by side, with the parameters that differ highlighted."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Header, Static

from tui.client.messages import OpenViewer
from tui.client.widgets.footer import FittingFooter
from tui.client.session import read_image
from tui.store.history import HistoryEntry
from tui.client.widgets.details import details_table
from tui.client.widgets.thumbnail import OpenablePicture


class CompareScreen(Screen):
    DEFAULT_CSS = """
    CompareScreen #pictures { height: 1fr; }
    CompareScreen OpenablePicture { width: 1fr; height: 1fr; }
    CompareScreen #compare-params { height: auto; max-height: 45%; }
    """
    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back", id="compare-back")]
    AUTO_FOCUS = "#compare-left"

    def __init__(self, first: HistoryEntry, second: HistoryEntry) -> None:
        super().__init__()
        self.first, self.second = first, second

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="pictures"):
            for side, entry in (("left", self.first), ("right", self.second)):
                thumb = OpenablePicture(placeholder="no image", id=f"compare-{side}")
                image = read_image(entry.image_path)
                if image is not None:
                    thumb.show(image)
                yield thumb
        with VerticalScroll(id="compare-params"):
            yield Static(details_table(self.first, self.second), id="compare-table")
        yield FittingFooter(compact=True)

    @on(OpenablePicture.Opened)
    def _opened(self, message: OpenablePicture.Opened) -> None:
        entry = self.first if message.picture.id == "compare-left" else self.second
        self.post_message(OpenViewer(entry))
