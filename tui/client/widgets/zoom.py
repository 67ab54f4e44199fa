"""A picture that zooms and pans: fitted to the panel first, then 1:8 up to 2:1 image pixels
per half-block pixel, with the view's centre kept inside the image.

The scale is the number of half-block pixels (one column, half a row) per image pixel:
1.0 shows every pixel of the image once (1:1), 2.0 doubles them so single pixels can be
judged, and fractions show a reduced whole. Enlarged pixels are repeated as they are
(nearest neighbour), so what is seen is the image, not an interpolation of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tui.client.widgets.thumbnail import Thumbnail

ZOOM_SCALES = (0.125, 0.25, 0.5, 1.0, 2.0)


def fit_scale(image_size: tuple[int, int], cells: tuple[int, int]) -> float:
    """The scale at which the whole image fits ``cells`` (columns, rows)."""
    width, height = image_size
    return min(max(1, cells[0]) / width, max(2, cells[1] * 2) / height)


def zoom_steps(image_size: tuple[int, int], cells: tuple[int, int]) -> list[float | None]:
    """The zoom levels in order: fit (None), then every fixed scale clearly larger than fit (a
    quarter larger at least, so the first + is a visible step; 1:1 whenever it is larger)."""
    fit = fit_scale(image_size, cells)
    return [None, *(scale for scale in ZOOM_SCALES if scale > fit * 1.25 or (scale == 1.0 and scale > fit * 1.01))]


@dataclass(frozen=True)
class Window:
    box: tuple[int, int, int, int]  # the image region shown: left, top, right, bottom
    size: tuple[int, int]  # the pixel size it is drawn at
    centre: tuple[float, float]  # the centre, moved inside the image where it had to be


def view_window(image_size: tuple[int, int], cells: tuple[int, int], scale: float,
                centre: tuple[float, float]) -> Window:
    """The part of the image that ``cells`` show at ``scale`` around ``centre``."""
    width, height = image_size
    box_w = min(width, max(1, round(cells[0] / scale)))
    box_h = min(height, max(1, round(cells[1] * 2 / scale)))
    cx = min(max(centre[0], box_w / 2), width - box_w / 2)
    cy = min(max(centre[1], box_h / 2), height - box_h / 2)
    left, top = round(cx - box_w / 2), round(cy - box_h / 2)
    left, top = min(max(0, left), width - box_w), min(max(0, top), height - box_h)
    drawn_w = max(1, min(cells[0], round(box_w * scale)))
    drawn_h = max(2, min(cells[1] * 2, round(box_h * scale)))
    return Window((left, top, left + box_w, top + box_h), (drawn_w, drawn_h - drawn_h % 2), (cx, cy))


class ZoomView(Thumbnail):
    """The viewer's picture. ``show`` resets to fit; the keys' actions live on the screen."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scale: float | None = None  # None: fitted to the panel
        self.centre = (0.0, 0.0)

    def show(self, image, final: bool = True) -> None:
        if image is not self.image:
            self.scale = None
            self.centre = (image.width / 2, image.height / 2) if image is not None else (0.0, 0.0)
        super().show(image, final)

    @property
    def cells(self) -> tuple[int, int]:
        return self.content_size.width, self.content_size.height

    def zoom(self, direction: int) -> None:
        """One step in (1) or out (-1) of ``zoom_steps``; 0 returns to fit."""
        if self.image is None:
            return
        steps = zoom_steps(self.image.size, self.cells)
        if direction == 0:
            scale = None
        else:
            here = self.scale if self.scale in steps else None
            index = min(len(steps) - 1, max(0, steps.index(here) + direction))
            scale = steps[index]
        self._change(scale, self.centre)

    def pan(self, dx: int, dy: int) -> None:
        """Move the view a quarter of what it shows, in the arrows' direction."""
        if self.image is None or self.scale is None:
            return
        window = view_window(self.image.size, self.cells, self.scale, self.centre)
        left, top, right, bottom = window.box
        cx, cy = window.centre
        self._change(self.scale, (cx + dx * (right - left) / 4, cy + dy * (bottom - top) / 4))

    def _change(self, scale: float | None, centre: tuple[float, float]) -> None:
        if scale is not None and self.image is not None:
            centre = view_window(self.image.size, self.cells, scale, centre).centre
        if (scale, centre) != (self.scale, self.centre):
            self.scale, self.centre = scale, centre
            self._strips = None
            self.refresh()

    @property
    def zoom_label(self) -> str:
        if self.image is None:
            return ""
        scale = fit_scale(self.image.size, self.cells) if self.scale is None else self.scale
        label = f"{scale * 100:.0f}%"
        return f"fit {label}" if self.scale is None else label

    def visible_box(self) -> tuple[int, int, int, int] | None:
        """The image region on screen now (the whole image when fitted)."""
        if self.image is None:
            return None
        if self.scale is None:
            return (0, 0, *self.image.size)
        return view_window(self.image.size, self.cells, self.scale, self.centre).box

    def source_box(self) -> tuple[int, int, int, int]:
        return self.visible_box()

    def frame_key(self, width: int, height: int) -> tuple:
        return (*super().frame_key(width, height), self.scale, self.centre)

    def frame_size(self, width: int, height: int) -> tuple[int, int]:
        if self.scale is None:
            return super().frame_size(width, height)
        return view_window(self.image.size, (width, height), self.scale, self.centre).size

    def frame(self, width: int, height: int):
        if self.scale is None:
            return super().frame(width, height)
        from PIL import Image

        window = view_window(self.image.size, (width, height), self.scale, self.centre)
        picture = self.image.convert("RGB").crop(window.box)
        method = Image.Resampling.NEAREST if self.scale >= 1 else Image.Resampling.LANCZOS
        return picture.resize(window.size, method) if picture.size != window.size else picture
