"""The stage: the picture beside a side column (recent images and the log).

The picture takes the width its aspect ratio needs at the stage's full height, so it is
as large as the terminal allows; the side column gets what is left, never less than
``SIDE_MIN`` columns. At 100x30 a square image is drawn 42 cells wide and 21 rows tall.
"""

from __future__ import annotations

from textual.containers import Horizontal

from tui.client.widgets.thumbnail import Thumbnail

SIDE_MIN = 30  # columns: enough for a log line's time and the start of its text


def picture_width(stage_width: int, stage_height: int, aspect: float) -> int:
    """Columns for a picture of ``aspect`` (width / height) at the stage's full height, two
    pixels per row, leaving ``SIDE_MIN`` columns beside it (at least 8 for the picture)."""
    wanted = round(stage_height * 2 * aspect)
    return max(8, min(wanted, stage_width - SIDE_MIN))


class Stage(Horizontal):
    DEFAULT_CSS = """
    Stage { height: 1fr; }
    Stage > Thumbnail { height: 1fr; }
    Stage > #side { width: 1fr; min-width: 8; }
    """

    def __init__(self, *children, **kwargs) -> None:
        super().__init__(*children, **kwargs)
        self.aspect = 1.0

    def fit_to(self, width: int, height: int) -> None:
        """Size the picture for images of ``width`` x ``height`` pixels."""
        self.aspect = width / height if width > 0 and height > 0 else 1.0
        self._fit()

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        width, height = self.size
        if width and height:
            self.query_one(Thumbnail).styles.width = picture_width(width, height, self.aspect)
