"""A block-character picture: two pixels per terminal cell (half blocks, via rich-pixels).

The image is fitted to the panel keeping its aspect ratio, resampled with a Lanczos
filter first (so a 64x64 latent preview or a 1024x1024 final both look their best),
and re-rendered when the panel's size changes. It works over plain SSH in any
truecolor or 256-colour terminal.
"""

from __future__ import annotations

from rich.align import Align
from rich.console import RenderableType
from rich.text import Text
from textual.widget import Widget


def half_block_rows(picture) -> list[list]:
    """Rows of segments drawing an RGB image with "▄" cells: the cell's background is the
    upper pixel, its foreground the lower one, so each cell shows two pixels.

    This runs on the interface thread several times a second while the model computes, so it
    avoids rich's colour parsing: colours are built directly, quantised to 6 bits a channel
    (262,144 colours, invisible on a preview) so that neighbouring cells share them.
    """
    from rich.color import Color, ColorType
    from rich.color_triplet import ColorTriplet
    from rich.segment import Segment
    from rich.style import Style

    width, height = picture.size
    data = picture.tobytes()
    colours: dict[int, Color] = {}
    from_color = Style.from_color

    def colour(offset: int) -> Color:
        r, g, b = data[offset] & 0xFC, data[offset + 1] & 0xFC, data[offset + 2] & 0xFC
        key = (r << 16) | (g << 8) | b
        found = colours.get(key)
        if found is None:
            found = colours[key] = Color(f"#{key:06x}", ColorType.TRUECOLOR, triplet=ColorTriplet(r, g, b))
        return found

    rows = []
    row_bytes = width * 3
    for top in range(0, height - 1, 2):
        upper, lower = top * row_bytes, (top + 1) * row_bytes
        rows.append([Segment("▄", from_color(colour(lower + x), colour(upper + x))) for x in range(0, row_bytes, 3)])
    return rows


def half_block_segments(picture) -> list:
    """The same cells as one segment list with line breaks, as rich-pixels' ``Pixels`` takes them."""
    from rich.segment import Segment

    segments = []
    for row in half_block_rows(picture):
        segments.extend(row)
        segments.append(Segment.line())
    return segments


def fit_size(image_size: tuple[int, int], cells: tuple[int, int]) -> tuple[int, int]:
    """Pixel size that fills ``cells`` (columns, rows) at two pixels per row, keeping the aspect ratio.

    Width and height are at least 1 and 2; height is even so every cell holds two pixels.
    """
    width, height = image_size
    box_w, box_h = max(1, cells[0]), max(2, cells[1] * 2)
    scale = min(box_w / width, box_h / height)
    fitted_w = max(1, min(box_w, round(width * scale)))
    fitted_h = max(2, min(box_h, round(height * scale)))
    return fitted_w, fitted_h - fitted_h % 2


class Thumbnail(Widget):
    """Draws through Textual's line API (one prebuilt Strip per row), which is several times
    cheaper per repaint than handing Textual a Rich renderable of thousands of segments."""

    DEFAULT_CSS = """
    Thumbnail {
        width: 1fr;
        height: 1fr;
    }
    """

    def __init__(self, placeholder: str = "no image yet", **kwargs) -> None:
        super().__init__(**kwargs)
        self.placeholder = placeholder
        self._image = None
        self._strips: tuple[tuple, list] | None = None

    @property
    def image(self):
        return self._image

    @property
    def picture_size(self) -> tuple[int, int] | None:
        """The pixel size the image is drawn at now (None without an image)."""
        return self._strips[0][1] if self._strips else None

    def show(self, image) -> None:
        if image is not None and image is self._image:
            return  # the finished image arrives twice (finished, then saved); draw it once
        self._image = image
        self._strips = None
        self.refresh()

    def clear(self, placeholder: str | None = None) -> None:
        if placeholder is not None:
            self.placeholder = placeholder
        self.show(None)

    def on_resize(self) -> None:
        self._strips = None
        self.refresh()

    def render(self) -> RenderableType:
        return Align.center(Text(self.placeholder, style="dim"), vertical="middle")

    def _picture_strips(self) -> list:
        from PIL import Image
        from textual.strip import Strip

        width, height = self.content_size.width, self.content_size.height
        size = fit_size(self._image.size, (width, height))
        key = (id(self._image), size, width, height)
        if self._strips is None or self._strips[0] != key:
            picture = self._image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
            left = (width - size[0]) // 2
            strips = [Strip.join([Strip.blank(left), Strip(row, size[0]), Strip.blank(width - left - size[0])])
                      for row in half_block_rows(picture)]
            self._strips = (key, strips)
        return self._strips[1]

    def render_line(self, y: int):
        if self._image is None:
            return super().render_line(y)
        from textual.strip import Strip

        strips = self._picture_strips()
        row = y - (self.content_size.height - len(strips)) // 2
        if 0 <= row < len(strips):
            return strips[row]
        return Strip.blank(self.content_size.width)
