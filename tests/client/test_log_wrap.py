"""The live log re-wraps to its width whenever that changes (terminal resize, F4), with the
hanging indent under the text after the time stamp, and never scrolls sideways."""

import re
import time
from contextlib import asynccontextmanager

import pytest
from rich.cells import cell_len
from textual.app import App

from tests.app_helpers import make_app, wait_loaded
from tests.scripted_engine import scripted
from tui.client.widgets.log import INDENT, LOG_LINES, LogPanel, break_offsets

STAMP = re.compile(r"\d\d:\d\d:\d\d ")
LONG = ("auto: attention slicing stays on because the free GPU memory is below what a 1024x1024 picture "
        "needs at float16, and the next job asks for four of them at once, so they are made one after another "
        "and saved to /home/ann/.local/share/sdtui/outputs/2026-11-27/143831-7-a-red-fox-in-the-snow.png")


def log_of(app) -> LogPanel:
    return app.main_screen.query_one(LogPanel)


def shown_rows(log: LogPanel) -> list[str]:
    """The log's rows as they are drawn now, trailing blanks removed."""
    return [log.render_line(y).text.rstrip() for y in range(log.scrollable_content_region.height)]


def rows_of_last_line(log: LogPanel, first_word: str) -> list[str]:
    rows = [row for row in shown_rows(log) if row]
    starts = [i for i, row in enumerate(rows) if STAMP.match(row) and row[9:].startswith(first_word)]
    assert starts, f"the line starting {first_word!r} is not on screen: {rows}"
    return rows[starts[-1]:]


def check_wrapped(log: LogPanel, text: str) -> list[str]:
    """Checks the log at its current width; returns the rows of ``text`` (the last line written)."""
    width = log.scrollable_content_region.width
    # (a) nothing drawn or held is wider than the log's content region
    assert all(cell_len(row) <= width for row in shown_rows(log)), (width, shown_rows(log))
    assert log.virtual_size.width <= width, (log.virtual_size, width)
    # (b) no sideways scrolling
    assert not log.show_horizontal_scrollbar and log.max_scroll_x == 0
    rows = rows_of_last_line(log, text.split()[0])
    # (c) every character of the line, in order, none cut off at the right edge
    assert re.sub(r"\s", "", "".join(row[9:] for row in rows)) == re.sub(r"\s", "", text), rows
    # (d) each continuation row hangs under the text, past the time stamp
    assert len(rows) > 1
    for row in rows[1:]:
        assert row.startswith(" " * INDENT) and not row[INDENT].isspace(), rows
    for row in shown_rows(log):  # every other line on screen too
        assert not row or STAMP.match(row) or (row.startswith(" " * INDENT) and not row[INDENT].isspace()), row
    return rows


def words_on_first_row(rows: list[str]) -> int:
    return len(rows[0][9:].split())


async def settle(pilot) -> None:
    await pilot.pause()
    await pilot.pause()


@asynccontextmanager
async def app_with_a_long_line(size):
    """The app (on the scripted engine: the subject is the log) at ``size``, its model loaded and
    LONG written last in its log; yields the pilot, the log and LONG's rows, checked."""
    app = make_app(engine=scripted())
    async with app.run_test(size=size) as pilot:
        await wait_loaded(pilot, app)
        log = log_of(app)
        app.main_screen.log_line(LONG)
        await settle(pilot)
        yield pilot, log, check_wrapped(log, LONG)


@pytest.mark.asyncio
async def test_log_rewraps_when_the_terminal_grows_and_shrinks(sdtui_home):
    async with app_with_a_long_line((80, 30)) as (pilot, log, narrow):
        await pilot.resize_terminal(200, 60)
        await settle(pilot)
        wide = check_wrapped(log, LONG)
        assert words_on_first_row(wide) > words_on_first_row(narrow)
        assert len(wide) < len(narrow)

        await pilot.resize_terminal(80, 30)
        await settle(pilot)
        assert check_wrapped(log, LONG) == narrow


@pytest.mark.asyncio
async def test_log_rewraps_when_f4_shows_and_hides_the_settings(sdtui_home):
    async with app_with_a_long_line((100, 40)) as (pilot, log, before):
        width = log.scrollable_content_region.width

        await pilot.press("f4")
        await settle(pilot)
        assert log.scrollable_content_region.width < width
        with_settings = check_wrapped(log, LONG)
        assert words_on_first_row(with_settings) < words_on_first_row(before)

        await pilot.press("f4")
        await settle(pilot)
        assert check_wrapped(log, LONG) == before


@pytest.mark.asyncio
async def test_lines_written_before_the_first_layout_are_wrapped_too(sdtui_home):
    """The first lines arrive before the log has a size; they are wrapped once it has one."""
    async with app_with_a_long_line((200, 60)) as (pilot, log, _):
        shown = "".join(shown_rows(log))
        for line in log.lines_written:
            body = line[9:].removeprefix("info: ").removeprefix("debug: ")
            assert re.sub(r"\s", "", body) in re.sub(r"\s", "", shown), line


def test_wide_characters_are_wrapped_by_the_cells_they_take():
    text = "12:00:00 queued: " + "雪の中の赤い狐 " * 8
    for width in (20, 33, 50):
        bounds = [0, *break_offsets(text, width), len(text)]
        rows = [text[a:b].rstrip() for a, b in zip(bounds, bounds[1:])]
        assert "".join(text[a:b] for a, b in zip(bounds, bounds[1:])) == text
        assert cell_len(rows[0]) <= width and all(cell_len(row) + INDENT <= width for row in rows[1:]), rows


class TimedLog(LogPanel):
    def __init__(self) -> None:
        super().__init__()
        self.rewraps: list[float] = []

    def _rewrap(self, width: int) -> None:
        started = time.perf_counter()
        super()._rewrap(width)
        self.rewraps.append(time.perf_counter() - started)


class LogApp(App):
    CSS = "LogPanel { height: 1fr; }"

    def compose(self):
        yield TimedLog()


@pytest.mark.asyncio
async def test_a_full_log_rewraps_quickly_and_keeps_its_place():
    app = LogApp()
    async with app.run_test(size=(120, 40)) as pilot:
        log = app.query_one(TimedLog)
        for n in range(LOG_LINES + 50):
            log.add(f"line {n}: " + LONG, "warning" if n % 7 == 0 else "info")
        await settle(pilot)
        assert len(log.lines_written) == LOG_LINES
        assert log.lines_written[0].endswith("line 50: " + LONG)
        assert log.is_vertical_scroll_end
        rows = log.virtual_size.height

        log.rewraps.clear()
        await pilot.resize_terminal(50, 40)
        await settle(pilot)
        assert log.virtual_size.height > rows and log.is_vertical_scroll_end
        check_wrapped(log, f"line {LOG_LINES + 49}: " + LONG)
        assert len(log.rewraps) == 1 and log.rewraps[0] < 1.0, log.rewraps  # a bound on a runaway re-wrap, not a benchmark: ~10 ms here

        # scrolled back, the log stays on the lines being read, through new lines and a resize
        log.scroll_to(y=log.max_scroll_y // 2, animate=False)
        await settle(pilot)
        shown = shown_rows(log)
        reading = next(re.search(r"line \d+:", row).group() for row in shown if STAMP.match(row))
        log.add("a new line at the end")
        await settle(pilot)
        assert shown_rows(log) == shown and not log.is_vertical_scroll_end
        await pilot.resize_terminal(120, 40)
        await settle(pilot)
        assert not log.is_vertical_scroll_end
        assert any(reading in row for row in shown_rows(log)[:5]), (reading, shown_rows(log)[:5])

        log.scroll_end(animate=False)
        await settle(pilot)
        log.add("followed to the end")
        await settle(pilot)
        assert shown_rows(log)[-1].endswith("followed to the end")
