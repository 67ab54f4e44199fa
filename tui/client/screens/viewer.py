"""The full-screen viewer: one history image on the whole terminal, zoom and pan, the
neighbours in history one key away, and the history keys (re-run, variations, copy path,
delete) on the image shown."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen

from tui.client.widgets.footer import FittingFooter
from tui.client.screens.entry_actions import ENTRY_BINDINGS, EntryActions
from tui.client.session import read_image
from tui.store.history import HistoryEntry
from tui.text import visible
from tui.client.widgets.details import settings_line
from tui.client.widgets.status import Line
from tui.client.widgets.zoom import ZoomView


def caption_text(entry: HistoryEntry, zoom: str) -> Text:
    """Prompt on the first line; zoom, seed, size, steps, scheduler and model on the second."""
    text = Text(visible(entry.prompt) or "(no prompt)", style="bold")
    if entry.id is None:  # an X/Y grid's contact sheet: its axes are in the title, its cells in the history
        details = [f"contact sheet {entry.width}x{entry.height}", f"seed {entry.seed}", "n: its images"]
    else:
        details = [settings_line(entry.seed, entry), visible(entry.model)]
    if zoom:
        details.insert(0, f"zoom {zoom}")
    text.append("\n" + " · ".join(details), style="dim")
    return text


class ViewerScreen(EntryActions, Screen):
    DEFAULT_CSS = """
    ViewerScreen #viewer-caption { height: 2; padding: 0 1; }
    ViewerScreen #viewer-picture { height: 1fr; width: 1fr; }
    """
    BINDINGS = [
        Binding("escape,q", "close", "Close", id="viewer-close"),
        Binding("plus,equals_sign", "zoom(1)", "Zoom in", id="viewer-zoom-in", key_display="+"),
        Binding("minus", "zoom(-1)", "Zoom out", id="viewer-zoom-out", key_display="-"),
        Binding("0", "zoom(0)", "Fit", id="viewer-fit"),
        Binding("n", "step(True)", "Older", id="viewer-next"),
        Binding("p", "step(False)", "Newer", id="viewer-previous"),
        *ENTRY_BINDINGS,
        Binding("enter,l", "load", "Load into prompt", id="viewer-load"),
        Binding("left", "pan(-1, 0)", "Pan left", id="viewer-pan-left", show=False),
        Binding("right", "pan(1, 0)", "Pan right", id="viewer-pan-right", show=False),
        Binding("up", "pan(0, -1)", "Pan up", id="viewer-pan-up", show=False),
        Binding("down", "pan(0, 1)", "Pan down", id="viewer-pan-down", show=False),
    ]

    def __init__(self, history, entry: HistoryEntry) -> None:
        super().__init__()
        self.history = history
        self.entry: HistoryEntry | None = entry

    @property
    def selected(self) -> HistoryEntry | None:
        return self.entry

    @property
    def picture(self) -> ZoomView:
        return self.query_one("#viewer-picture", ZoomView)

    def compose(self) -> ComposeResult:
        yield Line(id="viewer-caption", wrap=False)
        yield ZoomView(placeholder="no image", id="viewer-picture")
        yield FittingFooter(compact=True)

    def on_mount(self) -> None:
        self._show(self.entry)

    def on_resize(self) -> None:
        self.call_after_refresh(self._caption)

    def _show(self, entry: HistoryEntry | None) -> None:
        self.entry = entry
        picture = self.picture
        if entry is None:
            picture.clear("no image")
        else:
            image = read_image(entry.image_path)
            if image is None:
                picture.clear("image file missing")
            else:
                picture.show(image)
        self.call_after_refresh(self._caption)

    def _caption(self) -> None:
        caption = self.query_one("#viewer-caption", Line)
        if self.entry is None:
            caption.set(Text("history is empty", style="dim"))
        else:
            caption.set(caption_text(self.entry, self.picture.zoom_label))

    def action_close(self) -> None:
        self.app.pop_screen()

    def action_zoom(self, direction: int) -> None:
        self.picture.zoom(direction)
        self._caption()

    def action_pan(self, dx: int, dy: int) -> None:
        if self.picture.scale is None:
            self.app.notify("Zoom in with + to pan.", timeout=2)
            return
        self.picture.pan(dx, dy)

    def action_step(self, older: bool) -> None:
        if self.entry is None:
            return
        neighbour = self.history.neighbour(self.entry, older=older)
        if neighbour is None:
            self.app.notify("This is the oldest image." if older else "This is the newest image.", timeout=2)
            return
        self._show(neighbour)

    def go_to_entry(self, entry: HistoryEntry) -> None:
        self._show(entry)

    def entry_deleted(self, entry: HistoryEntry) -> None:
        history = self.history
        after = history.neighbour(entry, older=True) or history.neighbour(entry, older=False)
        if after is None:
            self.app.pop_screen()
        else:
            self._show(after)
