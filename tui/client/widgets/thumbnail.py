"""A block-character picture: two pixels per terminal cell (half blocks).

The image is fitted to the panel keeping its aspect ratio and re-rendered when the panel's
size changes. A finished image is resampled with a Lanczos filter; a latent preview (64x64
for a 512x512 job) fills the same cells as the finished image will, so nothing jumps when it
arrives, but is enlarged with the cheapest filter, since it is redrawn several times a
second and holds no more detail than its own pixels. It works over plain SSH in any
truecolor or 256-colour terminal.
"""

from __future__ import annotations

import random
import time

from rich.align import Align
from rich.console import RenderableType
from rich.text import Text
from textual.message import Message
from textual.widget import Widget

from tui.client.widgets.graphics import cell_pixels, iterm2_image, kitty_delete, kitty_image, sixel_image, tmux_passthrough


_STYLE_CACHE: dict[int, object] = {}
_COLOUR_CACHE: dict[int, object] = {}
# About 0.9 KB a style with its colours: 16,384 hold two whole frames of a 200x60 terminal
# (about 14 MB). A larger cache grew by 10 MB per 100 noisy images before it filled.
_CACHE_LIMIT = 1 << 14
# Previews are enlarged to the panel with this filter. The resize takes under a millisecond
# with any filter; what differs comes after it: nearest neighbour's repeated pixels make runs
# of identical cells, so a 200x60 frame is a third fewer bytes than with bilinear or Lanczos
# (which give nearly every cell its own colours) and is built in about half the time.
PREVIEW_FILTER = "NEAREST"
DITHER_256 = True  # ordered dithering in 256 colours: lower error as seen (colour benchmark, README)


def _colour(rgb: int):
    colour = _COLOUR_CACHE.get(rgb)
    if colour is None:
        from rich.color import Color, ColorType
        from rich.color_triplet import ColorTriplet

        if len(_COLOUR_CACHE) >= _CACHE_LIMIT:
            _COLOUR_CACHE.clear()
        colour = _COLOUR_CACHE[rgb] = Color(f"#{rgb:06x}", ColorType.TRUECOLOR,
                                            triplet=ColorTriplet(rgb >> 16, (rgb >> 8) & 0xFF, rgb & 0xFF))
    return colour


PALETTE_KEY = 1 << 48  # marks a style key made of two xterm palette indices


def _palette_colour(number: int):
    """xterm palette colour ``number`` with its RGB attached. Textual turns colours without RGB
    into truecolour, and Rich would then downgrade them again by its own rounding, which moves
    13 of the 240 colours (greys) to a neighbour; with the RGB attached the number goes out as is."""
    from rich.color import Color, ColorType
    from rich.color_triplet import ColorTriplet

    from tui.client.widgets.palette import xterm_palette

    red, green, blue = xterm_palette()[number - 16].tolist()
    return Color(f"color({number})", ColorType.EIGHT_BIT, number=number, triplet=ColorTriplet(red, green, blue))


def _style_for(key: int):
    """The Rich style of one half-block cell, ``key`` packing the upper pixel (background)
    above the lower (foreground): 24 bits each, or 8-bit palette indices above PALETTE_KEY.
    Styles and colours are kept between frames: Textual caches each style's escape codes
    on the object, so reuse saves that too."""
    style = _STYLE_CACHE.get(key)
    if style is None:
        from rich.style import Style

        if len(_STYLE_CACHE) >= _CACHE_LIMIT:
            _STYLE_CACHE.clear()
        if key & PALETTE_KEY:
            style = Style.from_color(_palette_colour(key & 0xFF), _palette_colour((key >> 8) & 0xFF))
        else:
            style = Style.from_color(_colour(key & 0xFFFFFF), _colour(key >> 24))
        _STYLE_CACHE[key] = style
    return style


def cell_keys(picture, colours: str = "truecolor"):
    """One style key per half-block cell (rows, columns) of an RGB image with an even height."""
    import numpy as np

    pixels = np.asarray(picture.convert("RGB"))
    height = pixels.shape[0] - pixels.shape[0] % 2
    pixels = pixels[:height]
    if colours == "256":
        from tui.client.widgets.palette import to_xterm256

        indices = to_xterm256(pixels, dither=DITHER_256).astype(np.uint64)
        return np.uint64(PALETTE_KEY) | (indices[0::2] << np.uint64(8)) | indices[1::2]
    # 6 bits a channel (262,144 colours, invisible on a preview) so that cells share styles.
    pixels = pixels.astype(np.uint32) & 0xFC
    packed = (pixels[:, :, 0] << 16) | (pixels[:, :, 1] << 8) | pixels[:, :, 2]
    return (packed[0::2].astype(np.uint64) << np.uint64(24)) | packed[1::2]


def half_block_rows(picture, colours: str = "truecolor") -> list[list]:
    """Rows of segments drawing an RGB image with "▄" cells: the cell's background is the
    upper pixel, its foreground the lower one, so each cell shows two pixels. ``colours`` is
    "truecolor", or "256" for xterm palette colours chosen here (see ``palette``).

    This runs on the interface thread several times a second while the model computes, so
    the per-pixel work is done by numpy, and runs of identical cells become one segment.
    """
    import numpy as np
    from rich.segment import Segment

    keys = cell_keys(picture, colours)
    unique, inverse = np.unique(keys, return_inverse=True)
    styles = [_style_for(key) for key in unique.tolist()]
    inverse = inverse.reshape(keys.shape)
    rows = []
    for cells in inverse:
        starts = np.flatnonzero(np.diff(cells)) + 1
        bounds = [0, *starts.tolist(), len(cells)]
        indices = cells[bounds[:-1]].tolist()
        rows.append([Segment("▄" * (end - begin), styles[index])
                     for begin, end, index in zip(bounds, bounds[1:], indices)])
    return rows


def half_block_segments(picture) -> list:
    """The same cells as one segment list with line breaks, as rich-pixels' ``Pixels`` takes them."""
    from rich.segment import Segment

    segments = []
    for row in half_block_rows(picture):
        segments.extend(row)
        segments.append(Segment.line())
    return segments


def fit_size(image_size: tuple[int, int], cells: tuple[int, int], upscale: bool = True) -> tuple[int, int]:
    """Pixel size that fills ``cells`` (columns, rows) at two pixels per row, keeping the aspect ratio
    (and, without ``upscale``, never larger than the image itself).

    Width and height are at least 1 and 2; height is even so every cell holds two pixels.
    """
    width, height = image_size
    box_w, box_h = max(1, cells[0]), max(2, cells[1] * 2)
    scale = min(box_w / width, box_h / height)
    if not upscale:
        scale = min(scale, 1.0)
    fitted_w = max(1, min(box_w, round(width * scale)))
    fitted_h = max(2, min(box_h, round(height * scale)))
    return fitted_w, fitted_h - fitted_h % 2


# A cell whose colours differ from its left neighbour's costs two 24-bit colour escapes
# (about 38 bytes); each cell adds its 3-byte character.
BYTES_PER_STYLE_CHANGE = 38


class ByteBudget:
    """A token bucket of terminal bytes per second: previews wait (the newest one is kept)
    rather than exceed what an SSH link should carry."""

    def __init__(self, bytes_per_second: float):
        self.rate = bytes_per_second
        self.tokens = bytes_per_second  # one second's worth to start with
        self.stamp: float | None = None

    def _fill(self, now: float) -> None:
        if self.stamp is not None:
            self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, cost: float, now: float) -> float:
        """Seconds until ``cost`` bytes may be sent (0: now)."""
        if self.rate <= 0:
            return 0.0
        self._fill(now)
        return max(0.0, (min(cost, self.rate) - self.tokens) / self.rate)

    def spend(self, cost: float, now: float) -> None:
        self._fill(now)
        self.tokens -= cost


class _NoTerminal:
    graphics = None
    cell_size = None


def _terminal(app):
    """The app's TerminalFeatures (an app without them, in a test of this widget alone, draws half blocks)."""
    return getattr(app, "terminal", None) or _NoTerminal


def _control(text: str):
    """A segment written to the terminal as it is, taking no cells (an image's escape sequence)."""
    from rich.segment import ControlType, Segment
    from rich.style import Style

    return Segment(text, Style(), ((ControlType.CURSOR_FORWARD, 0),))


class Thumbnail(Widget):
    """Draws through Textual's line API (one prebuilt Strip per row), which is several times
    cheaper per repaint than handing Textual a Rich renderable of thousands of segments."""

    real_pixels = True  # drawn through the app's graphics protocol, when it has one

    DEFAULT_CSS = """
    Thumbnail {
        width: 1fr;
        height: 1fr;
    }
    """

    def __init__(self, placeholder: str = "no image yet", preview_bytes_per_s: float = 0, **kwargs) -> None:
        """``preview_bytes_per_s``: what live previews may cost the terminal link (``offer``)."""
        super().__init__(**kwargs)
        self.placeholder = placeholder
        self._budget = ByteBudget(preview_bytes_per_s)
        self._offered = None  # the newest preview waiting for the budget
        self._offer_timer = None
        self._image = None
        self._final = True
        self._kitty_id = random.randint(1, 0xFFFFFF)  # this picture's Kitty image id
        self._kitty_shown = False
        self._strips: tuple[tuple, list] | None = None
        self.frame_bytes = 0  # about what the last picture costs to send to the terminal

    @property
    def image(self):
        return self._image

    @property
    def picture_size(self) -> tuple[int, int] | None:
        """The pixel size the image is drawn at now (None without an image)."""
        return self._strips[2] if self._strips else None

    def offer(self, preview) -> None:
        """A live preview: drawn now if the byte budget allows, else the newest waits for it."""
        now = time.monotonic()
        wait = self._budget.wait_for(self.frame_bytes, now)
        if wait <= 0:
            self._offered = None
            self.show(preview, final=False)
            self._budget.spend(self.frame_bytes, now)
            return
        self._offered = preview
        if self._offer_timer is None:
            self._offer_timer = self.set_timer(wait, self._take_offered)

    def _take_offered(self) -> None:
        self._offer_timer = None
        preview, self._offered = self._offered, None
        if preview is not None:
            self.offer(preview)

    def drop_offers(self) -> None:
        """The job ended: a preview still waiting is never drawn."""
        self._offered = None
        if self._offer_timer is not None:
            self._offer_timer.stop()
            self._offer_timer = None

    def show(self, image, final: bool = True) -> None:
        """Draw ``image`` fitted to the panel. ``final=False`` for latent previews: they take the
        same cells as the finished image, enlarged cheaply (half blocks: PREVIEW_FILTER; Kitty and
        iTerm2: the terminal scales the small picture; Sixel: nearest neighbour)."""
        if image is not None and image is self._image:
            return  # the finished image arrives twice (finished, then saved); draw it once
        self._image = image
        self._final = final
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

    def frame_size(self, width: int, height: int) -> tuple[int, int]:
        """The half-block pixel size the frame is drawn at in a panel of ``width`` x ``height``
        cells (two pixels a row); a graphics protocol covers the same cells."""
        return fit_size(self._image.size, (width, height))

    def frame(self, width: int, height: int):
        """The image to draw in a panel of ``width`` x ``height`` cells, at ``frame_size``: here
        the whole image fitted to the panel."""
        from PIL import Image

        size = self.frame_size(width, height)
        picture = self._image.convert("RGB")
        if picture.size != size:
            method = Image.Resampling.LANCZOS if self._final else Image.Resampling[PREVIEW_FILTER]
            picture = picture.resize(size, method)
        return picture

    def frame_key(self, width: int, height: int) -> tuple:
        """What the frame depends on: the strips are rebuilt only when it changes."""
        return (id(self._image), self._final, width, height)

    def source_box(self) -> tuple[int, int, int, int]:
        """The region of the image the frame shows (all of it here; the viewer's zoom crops it)."""
        return (0, 0, *self._image.size)

    def _protocol(self):
        """How this frame is drawn: the app's graphics choice while this picture's screen is the
        one in front, half blocks otherwise (a dimmed screen under a dialog, say), and always for
        pictures too small to gain from real pixels (the recent strip's)."""
        choice = _terminal(self.app).graphics
        if choice is None or choice.protocol == "halfblock" or not self.real_pixels or not self.screen.is_active:
            return None
        return choice

    def _picture_strips(self) -> list:
        from textual.strip import Strip

        width, height = self.content_size.width, self.content_size.height
        choice = self._protocol()
        # The cells beside the picture take the background of what is around it: a new theme
        # rebuilds the strips, or they would keep the old one in a band across the panel.
        key = (*self.frame_key(width, height), choice, self.rich_style)
        if choice is not None:  # the sequence holds the picture's place on the screen
            key += (self.content_region.x, self.content_region.y)
        if self._strips is None or self._strips[0] != key:
            if choice is not None:  # the protocol's picture is made from the source, not the half-block frame
                size = self.frame_size(width, height)
                left = (width - size[0]) // 2
                strips = self._graphic_strips(choice, size, left, width, height)
            else:
                picture = self.frame(width, height)
                size = picture.size
                left = (width - size[0]) // 2
                rows = half_block_rows(picture, "256" if self.app.console.color_system == "256" else "truecolor")
                self.frame_bytes = sum(len(row) for row in rows) * BYTES_PER_STYLE_CHANGE + size[0] * len(rows) * 3
                blank = self.rich_style
                strips = [Strip.join([Strip.blank(left, blank), Strip(row, size[0]),
                                      Strip.blank(width - left - size[0], blank)]) for row in rows]
                if self._kitty_shown:  # drawn over by half blocks now: take the Kitty image away
                    self._kitty_shown = False
                    strips[0] = Strip([*strips[0], _control(self._wrapped(kitty_delete(self._kitty_id)))],
                                      width)
            self._strips = (key, strips, size)
        return self._strips[1]

    def _wrapped(self, sequence: str) -> str:
        choice = _terminal(self.app).graphics
        return tmux_passthrough(sequence) if choice is not None and choice.passthrough else sequence

    def _graphic_strips(self, choice, size: tuple[int, int], left: int, width: int, height: int) -> list:
        """Blank cells where the picture goes; the last row carries the image's escape sequence,
        which draws it from the picture's top-left cell and puts the cursor back after."""
        from PIL import Image
        from rich.control import Control
        from textual.strip import Strip

        columns, rows = size[0], size[1] // 2
        cell_w, cell_h = _terminal(self.app).cell_size or cell_pixels()
        box = self.source_box()
        region = self._image.convert("RGB").crop(box)
        wanted = (columns * cell_w, rows * cell_h)
        scale = min(wanted[0] / region.width, wanted[1] / region.height)
        target = (max(1, round(region.width * scale)), max(1, round(region.height * scale)))
        picture = region  # a preview as it is: Kitty and iTerm2 scale it into the cells
        if self._final and target != region.size:
            method = Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.LANCZOS
            picture = region.resize(target, method)
        if choice.protocol == "kitty":
            sequence = kitty_image(picture, columns, rows, self._kitty_id)
            self._kitty_shown = True
        elif choice.protocol == "iterm2":
            sequence = iterm2_image(picture, columns, rows)
        else:  # Sixel cannot scale: the encoder repeats a preview's pixels to fill the cells
            sequence = sixel_image(picture, target)
        sequence = self._wrapped(sequence)
        self.frame_bytes = len(sequence)
        region_x, region_y = self.content_region.x + left, self.content_region.y + (height - rows) // 2
        # The sequence sits one cell into the picture's last row, never at an edge the widgets
        # beside it share, so their repaints do not send the image again; it ends with the cursor
        # back where Textual left it.
        back = Control.move_to(self.content_region.x + 1, region_y + rows - 1).segment.text
        draw = _control(Control.move_to(region_x, region_y).segment.text + sequence + back)
        strips = [Strip.blank(width, self.rich_style) for _ in range(rows)]
        strips[-1] = Strip([*Strip.blank(1, self.rich_style), draw, *Strip.blank(width - 1, self.rich_style)], width)
        return strips

    def redraw(self) -> None:
        """Draw again from the image (the way pictures are drawn changed)."""
        self.forget_graphics()
        self.refresh()

    def forget_graphics(self) -> None:
        """The picture's screen went behind another: a Kitty image, which floats above the text,
        is taken away (Sixel and iTerm2 images are overwritten by the next screen's cells)."""
        if self._kitty_shown:
            self._kitty_shown = False
            write = getattr(getattr(self.app, "_driver", None), "write", None)
            if write is not None:
                write(self._wrapped(kitty_delete(self._kitty_id)))
        self._strips = None

    def render_line(self, y: int):
        if self._image is None:
            return super().render_line(y)
        from textual.strip import Strip

        strips = self._picture_strips()
        row = y - (self.content_size.height - len(strips)) // 2
        if 0 <= row < len(strips):
            return strips[row]
        return Strip.blank(self.content_size.width, self.rich_style)


class OpenablePicture(Thumbnail, can_focus=True):
    """A picture that opens full screen: Enter while focused, or a click."""

    DEFAULT_CSS = """
    OpenablePicture { border: tall $background; }
    OpenablePicture:focus { border: tall $accent; }
    """
    BINDINGS = [("enter", "open", "View full screen")]

    class Opened(Message):
        def __init__(self, picture: "OpenablePicture") -> None:
            super().__init__()
            self.picture = picture

        @property
        def control(self) -> "OpenablePicture":
            return self.picture

    def action_open(self) -> None:
        self.post_message(self.Opened(self))

    def on_click(self) -> None:
        self.post_message(self.Opened(self))
