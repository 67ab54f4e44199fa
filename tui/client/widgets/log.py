"""The live log: timestamped lines from the engine and from Python logging.

Every line is plain text (never markup) passed through ``visible()``, so a prompt or a
library message cannot style the log or send control sequences to the terminal.

Lines are kept whole and wrapped to the log's width when shown, again whenever that width
changes (a resize, F4), so the log never needs to scroll sideways.
"""

from __future__ import annotations

import logging
import re
import time
from bisect import bisect_right

from rich.cells import cell_len
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.client.messages import LogLine
from tui.logs import screen_line
from tui.text import visible

LOG_LINES = 2000  # kept on screen for scrolling back; the log file keeps everything
LEVEL_STYLES = {"error": "bold red", "warning": "yellow", "info": "", "debug": "dim"}
INDENT = 9  # continuation lines start under the text, past the "HH:MM:SS " stamp


def break_offsets(plain: str, width: int, indent: int = INDENT) -> list[int]:
    """Where to break ``plain`` into lines of at most ``width`` cells, continuation lines
    indented by ``indent``: at spaces, and inside a long path after a "/" (or a "-" in a
    long file name) rather than mid-word."""
    if len(plain) <= width and plain.isascii():
        return []
    return _Pieces(plain).breaks(width, indent)


class _Pieces:
    """A line cut where it may break, measured once so that breaking it again at another
    width costs a binary search per row rather than a step per word."""

    __slots__ = ("plain", "chars", "cells", "ends")

    def __init__(self, plain: str) -> None:
        self.plain = plain
        self.chars, self.cells = [0], [0]  # where each piece starts (and the end of the last)
        self.ends: list[int] = []  # the cell where each piece's text ends, trailing spaces left out
        for piece in re.split(r"(?<=\s)(?=\S)|(?<=[/-])(?=[^/\s-])", plain):
            if piece:
                bare = piece.rstrip()
                self.ends.append(self.cells[-1] + (len(bare) if bare.isascii() else cell_len(bare)))
                self.cells.append(self.cells[-1] + (len(piece) if piece.isascii() else cell_len(piece)))
                self.chars.append(self.chars[-1] + len(piece))

    def breaks(self, width: int, indent: int) -> list[int]:
        ends, chars, cells = self.ends, self.chars, self.cells
        offsets: list[int] = []
        if not ends or ends[-1] <= width:
            return offsets
        count, piece, start_char, start_cell, room = len(ends), 0, 0, 0, width
        while True:
            last = bisect_right(ends, start_cell + room, piece) - 1
            if last >= piece:  # pieces up to ``last`` fill this row
                piece = last + 1
                if piece == count:
                    return offsets
                start_char, start_cell = chars[piece], cells[piece]
            else:  # what is left of this piece is longer than a whole row: cut it
                rest = self.plain[start_char:chars[piece + 1]]
                cut = _fitting(rest, room)
                start_char += cut
                start_cell += cut if rest.isascii() else cell_len(rest[:cut])
                if start_char == chars[piece + 1]:  # only where one wide character overfills a row
                    piece += 1
                    if piece == count:
                        return offsets
            offsets.append(start_char)
            room = max(1, width - indent)


def _fitting(text: str, cells: int) -> int:
    """How many characters of ``text`` fit in ``cells`` cells (at least one)."""
    if text.isascii():
        return max(1, cells)
    used = 0
    for count, char in enumerate(text):
        used += cell_len(char)
        if used > cells:
            return max(1, count)
    return len(text)


def _indent(width: int) -> int:
    """The hanging indent at ``width``: narrower where the full one would leave little room."""
    return INDENT if width >= 2 * INDENT else width // 4


class _Entry:
    """One line of the log and, at the width it was last wrapped to, where it breaks."""

    __slots__ = ("stamp", "level", "body", "text", "plain", "pieces", "offsets", "strips")

    def __init__(self, stamp: str, level: str, body: str) -> None:
        self.stamp, self.level, self.body = stamp, level, body
        style = LEVEL_STYLES.get(level, "")
        self.text = Text(stamp + " ", style="dim")
        if level in ("warning", "error"):
            self.text.append(level + ": ", style=style)
        self.text.append(body.expandtabs(4), style=style)
        self.plain = self.text.plain
        self.pieces: _Pieces | None = None
        self.offsets: list[int] = []
        self.strips: list[Strip] | None = None


def _wrap(entry: _Entry, width: int) -> int:
    """Breaks ``entry`` for ``width`` cells; returns how many rows it takes."""
    if len(entry.plain) <= width and entry.plain.isascii():
        entry.offsets = []
    else:
        if entry.pieces is None:
            entry.pieces = _Pieces(entry.plain)
        entry.offsets = entry.pieces.breaks(width, _indent(width))
    entry.strips = None
    return len(entry.offsets) + 1


class LogPanel(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    LogPanel {
        height: 8;
        border-top: solid $primary-darken-2;
        background: $surface;
        color: $foreground;
        overflow-x: hidden;
        overflow-y: scroll;
        &:focus { background-tint: $foreground 5%; }
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._entries: list[_Entry] = []  # the last LOG_LINES lines
        # Rows are numbered from the first line ever kept, so dropping the oldest line renumbers
        # nothing: line i starts at row _starts[i]; the log holds rows _starts[0] to _end - 1.
        self._starts: list[int] = []
        self._end = 0
        self._wrap_width = 0  # 0 until the first layout
        self._following = True  # at the end: new lines scroll into view

    @property
    def lines_written(self) -> list[str]:
        return [f"{entry.stamp} {entry.level}: {entry.body}" for entry in self._entries]

    @property
    def _row_count(self) -> int:
        return self._end - self._starts[0] if self._starts else 0

    def add(self, text: str, level: str = "info", created: float | None = None) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(created or time.time()))
        self._entries.append(entry := _Entry(stamp, level, visible(text)))
        if not self._wrap_width:
            del self._entries[:-LOG_LINES]
            return
        self._starts.append(self._end)
        self._end += _wrap(entry, self._wrap_width)
        dropped = 0
        if len(self._entries) > LOG_LINES:
            dropped = self._starts[1] - self._starts[0]
            del self._entries[0], self._starts[0]
        follow = self._following and not self.is_vertical_scrollbar_grabbed
        self.virtual_size = Size(self._wrap_width, self._row_count)
        if follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        elif dropped:  # the rows being read stay in view
            self.scroll_to(y=max(0, self.scroll_y - dropped), animate=False)
        self.refresh()

    def clear_lines(self) -> None:
        self._entries.clear()
        self._starts.clear()
        self._end = 0
        self._following = True
        self.virtual_size = Size(self._wrap_width, 0)
        self.refresh()

    def on_resize(self) -> None:
        width = self.scrollable_content_region.width
        if width > 0 and width != self._wrap_width:
            self._rewrap(width)
        elif self._following:  # a shorter log keeps the last line in view
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def _line_at(self, row: int) -> tuple[int, int]:
        """The line on ``row`` (from the top of the log), and which of its rows that is."""
        row += self._starts[0]
        line = bisect_right(self._starts, row) - 1
        return line, row - self._starts[line]

    def _rewrap(self, width: int) -> None:
        """Wraps every line again at ``width``, keeping the row at the top in view (or the
        end, when following it)."""
        anchor = None
        if not self._following and self.scroll_offset.y < self._row_count:
            line, index = self._line_at(self.scroll_offset.y)
            anchor = (line, self._entries[line].offsets[index - 1] if index else 0)
        self._wrap_width = width
        starts, end = [], 0
        for entry in self._entries:
            starts.append(end)
            end += _wrap(entry, width)
        self._starts, self._end = starts, end
        self.virtual_size = Size(width, end)
        if anchor is None:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        else:
            line, offset = anchor
            self.scroll_to(y=starts[line] + bisect_right(self._entries[line].offsets, offset), animate=False)
            self._following = self.is_vertical_scroll_end
        self.refresh()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self._wrap_width:
            self._following = round(new_value) >= self.max_scroll_y

    def notify_style_update(self) -> None:
        super().notify_style_update()
        for entry in self._entries:
            entry.strips = None

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        row = self.scroll_offset.y + y
        if row >= self._row_count:
            return Strip.blank(width, self.rich_style)
        line, index = self._line_at(row)
        entry = self._entries[line]
        if entry.strips is None:
            entry.strips = self._render_rows(entry)
        return entry.strips[index].crop_extend(0, width, None).apply_style(self.rich_style)

    def _render_rows(self, entry: _Entry) -> list[Strip]:
        console = self.app.console
        indent = Text(" " * _indent(self._wrap_width))
        strips = []
        for index, row in enumerate(entry.text.divide(entry.offsets)):
            row.rstrip()
            if index:
                row = indent + row
            strips.append(Strip(row.render(console), row.cell_len))
        return strips


class LogForwarder(logging.Handler):
    """Sends log records to ``post`` as LogLine messages; safe from any thread."""

    def __init__(self, post, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._post = post

    def attach(self) -> None:
        """Take the root logger's records, INFO and up at least."""
        root = logging.getLogger()
        root.addHandler(self)
        if root.getEffectiveLevel() > logging.INFO:
            root.setLevel(logging.INFO)

    def detach(self) -> None:
        logging.getLogger().removeHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = screen_line(record)
            if line is not None:
                self._post(LogLine(record.levelname.lower(), line, record.created))
        except Exception:  # logging must never break the app
            self.handleError(record)
