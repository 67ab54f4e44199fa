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
        self._rendered: tuple[tuple, RenderableType] | None = None

    @property
    def image(self):
        return self._image

    def show(self, image) -> None:
        self._image = image
        self._rendered = None
        self.refresh()

    def clear(self, placeholder: str | None = None) -> None:
        if placeholder is not None:
            self.placeholder = placeholder
        self.show(None)

    def on_resize(self) -> None:
        self._rendered = None
        self.refresh()

    def render(self) -> RenderableType:
        if self._image is None:
            return Align.center(Text(self.placeholder, style="dim"), vertical="middle")
        size = fit_size(self._image.size, (self.content_size.width, self.content_size.height))
        key = (id(self._image), size)
        if self._rendered is None or self._rendered[0] != key:
            from PIL import Image
            from rich_pixels import Pixels

            picture = self._image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
            self._rendered = (key, Align.center(Pixels.from_image(picture), vertical="middle"))
        return self._rendered[1]
