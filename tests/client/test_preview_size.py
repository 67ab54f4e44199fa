"""A live preview takes the cells the finished image will take (no jump when it is done), in
half blocks and through each graphics protocol, with the stage's background around it and a
byte count that grows with the frame; and the warning for a named protocol that may not show."""

import logging
import re
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from textual.app import App
from textual.containers import Horizontal

from tui.client.terminal_features import TerminalFeatures
from tui.client.widgets.graphics import Choice, Replies, choose_graphics, forced_warning, multiplexer, read_replies
from tui.client.widgets.thumbnail import Thumbnail

SIZES = [(100, 30), (200, 60)]


def noise(size: int, seed: int = 1) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


class Stage(App):
    """A picture on a stage whose background differs from the screen's, as the main screen's
    layout would put it: the panel wider than the picture, so cells beside it stay blank."""

    CSS = "#stage { background: $panel; }"

    def __init__(self, graphics: Choice | None = None) -> None:
        super().__init__()
        self.terminal = SimpleNamespace(graphics=graphics, cell_size=(10, 20))  # as the app's TerminalFeatures

    def compose(self):
        with Horizontal(id="stage"):
            yield Thumbnail(id="picture")


def picture_cells(widget: Thumbnail) -> tuple[int, int, int, int]:
    """First and last column and row of the half-block cells drawn."""
    columns, rows = [], []
    for y in range(widget.content_size.height):
        x = 0
        for segment in widget.render_line(y):
            if "▄" in segment.text:
                columns += [x, x + len(segment.text) - 1]
                rows.append(y)
            x += len(segment.text)
    return min(columns), max(columns), min(rows), max(rows)


async def drawn(pilot, widget: Thumbnail, image, final: bool):
    widget.show(image, final)
    await pilot.pause()
    return widget.picture_size, picture_cells(widget)


@pytest.mark.asyncio
@pytest.mark.parametrize("size", SIZES)
async def test_a_preview_takes_the_cells_of_the_finished_image(size):
    app = Stage()
    async with app.run_test(size=size) as pilot:
        picture = app.query_one(Thumbnail)
        preview = await drawn(pilot, picture, noise(16), final=False)
        finished = await drawn(pilot, picture, noise(128, seed=2), final=True)
        assert preview == finished


def sequence_of(widget: Thumbnail) -> str:
    return "".join(segment.text for y in range(widget.content_size.height) for segment in widget.render_line(y)
                   if segment.control)


async def preview_then_finished(pilot, app: Stage) -> tuple[str, str]:
    """The escape sequences that draw a 16-pixel preview, then the 128-pixel finished image."""
    picture = app.query_one(Thumbnail)
    picture.show(noise(16), final=False)
    await pilot.pause()
    preview = sequence_of(picture)
    picture.show(noise(128, seed=2))
    await pilot.pause()
    return preview, sequence_of(picture)


@pytest.mark.asyncio
@pytest.mark.parametrize("size", SIZES)
async def test_kitty_and_iterm2_scale_the_small_preview_into_the_finished_images_cells(size):
    for protocol, cells in (("kitty", r"c=(\d+),r=(\d+)"), ("iterm2", r"width=(\d+);height=(\d+)")):
        app = Stage(Choice(protocol, "test"))
        async with app.run_test(size=size) as pilot:
            preview, finished = await preview_then_finished(pilot, app)
        assert re.search(cells, preview).groups() == re.search(cells, finished).groups(), protocol
        # where the picture starts: the first cursor move
        assert re.search(r"\x1b\[\d+;\d+H", preview).group() == re.search(r"\x1b\[\d+;\d+H", finished).group()
        assert len(preview) < len(finished) / 4, "the preview's own pixels are sent, not the enlarged ones"


@pytest.mark.asyncio
@pytest.mark.parametrize("size", SIZES)
async def test_a_sixel_preview_fills_the_finished_images_pixels(size):
    app = Stage(Choice("sixel", "test"))
    async with app.run_test(size=size) as pilot:
        preview, finished = await preview_then_finished(pilot, app)
    raster = r'"1;1;(\d+);(\d+)'
    assert re.search(raster, preview).groups() == re.search(raster, finished).groups()
    assert re.search(r"\x1b\[\d+;\d+H", preview).group() == re.search(r"\x1b\[\d+;\d+H", finished).group()


@pytest.mark.asyncio
async def test_the_cells_around_a_picture_have_the_stages_background_after_a_theme_change():
    app = Stage()
    async with app.run_test(size=(100, 30)) as pilot:
        picture = app.query_one(Thumbnail)
        picture.show(noise(16), final=False)
        await pilot.pause()
        picture_cells(picture)
        app.theme = "textual-light"
        await pilot.pause()
        stage = app.query_one("#stage").rich_style.bgcolor
        blanks = {segment.style.bgcolor for y in range(picture.content_size.height)
                  for segment in picture.render_line(y) if segment.text.strip() == "" and not segment.control}
        assert blanks == {stage}


@pytest.mark.asyncio
async def test_frame_bytes_grow_with_the_frame_and_count_what_is_written(monkeypatch):
    monkeypatch.setenv("COLORTERM", "truecolor")  # the colour escapes the estimate counts
    app = Stage()
    written = {}
    async with app.run_test(size=(100, 30)) as pilot:
        picture = app.query_one(Thumbnail)
        for size in SIZES:
            await pilot.resize_terminal(*size)
            await pilot.pause()
            picture.show(noise(16, seed=size[0]), final=False)
            await pilot.pause()
            strips = [picture.render_line(y) for y in range(picture.content_size.height)]
            columns = picture_cells(picture)
            cells = sum(len(strip.crop(columns[0], columns[1] + 1).render(app.console).encode())
                        for strip in strips[columns[2]:columns[3] + 1])
            written[size] = (picture.frame_bytes, cells)
    (small, _), (large, _) = written[SIZES[0]], written[SIZES[1]]
    assert large > 2 * small  # four times the cells
    for estimate, real in written.values():
        assert 0.8 * real <= estimate <= 2 * real


# --- a named protocol that may not show ---------------------------------------------------------

DA1_PLAIN, DA1_SIXEL = "\x1b[?1;2c", "\x1b[?1;2;4c"
TMUX_33 = read_replies(["\x1bP>|tmux 3.3a\x1b\\", DA1_PLAIN])  # tmux answers for itself
TMUX_34 = read_replies(["\x1bP>|tmux 3.4\x1b\\", DA1_SIXEL])
FACTS = {"allow-passthrough": "off", "client_termtype": "foot(1.18)", "client_termfeatures": "256,RGB,sixel"}
FIX = "if the stage stays blank, use --graphics auto or halfblock"


def test_the_multiplexer_is_known_by_its_variable():
    assert multiplexer({"TMUX": "/tmp/tmux-0/default,1,0"}) == "tmux"
    assert multiplexer({"STY": "1234.pts-0.host"}) == "GNU screen"
    assert multiplexer({"ZELLIJ": "0"}) == "Zellij"
    assert multiplexer({"TERM": "xterm"}) is None


def test_sixel_inside_tmux_warns_with_what_tmux_answered():
    assert forced_warning("sixel", None, "tmux", FACTS) == \
        f"graphics: sixel, as asked; inside tmux, Sixel shows only when tmux was built with it (3.4 or newer) — {FIX}"
    assert forced_warning("sixel", TMUX_33, "tmux", FACTS) == \
        "graphics: sixel, as asked, but tmux 3.3a answered that it cannot draw Sixel (tmux draws Sixel only when " \
        f"built with it, 3.4 or newer) — {FIX}"
    assert forced_warning("sixel", TMUX_34, "tmux", FACTS) == ""  # built with it, and foot has it
    outer_without = {**FACTS, "client_termtype": "xterm(390)", "client_termfeatures": "256,RGB"}
    assert "xterm(390) outside it did not list Sixel" in forced_warning("sixel", TMUX_34, "tmux", outer_without)
    # What the facts alone give, through the choice the app logs: the protocol as told, and the warning.
    choice = choose_graphics("sixel", None, FACTS)
    assert (choice.protocol, choice.passthrough) == ("sixel", False) and "3.4 or newer" in choice.warning


def test_kitty_and_iterm2_inside_tmux_warn_without_allow_passthrough():
    for setting, name in (("kitty", "Kitty"), ("iterm2", "iTerm2")):
        assert forced_warning(setting, None, "tmux", FACTS) == \
            f"graphics: {setting}, as asked; inside tmux, {name} images reach the terminal only with " \
            f"allow-passthrough on (tmux set -g allow-passthrough on) — {FIX}"
        on = choose_graphics(setting, None, {**FACTS, "allow-passthrough": "on"})
        assert on.passthrough and on.warning == ""


def test_a_terminal_that_answers_it_cannot_is_named_and_others_are_left_alone():
    plain = read_replies(["\x1bP>|foot(1.18)\x1b\\", DA1_PLAIN])
    assert forced_warning("sixel", plain, None) == \
        f"graphics: sixel, as asked, but foot(1.18) answered that it cannot draw Sixel — {FIX}"
    assert forced_warning("sixel", read_replies([DA1_PLAIN]), None).startswith(
        "graphics: sixel, as asked, but the terminal answered that it cannot draw Sixel")
    assert "did not answer the Kitty graphics query" in forced_warning("kitty", plain, None)
    assert forced_warning("sixel", read_replies([DA1_SIXEL]), None) == ""
    assert forced_warning("kitty", read_replies(["\x1b_Gi=31;OK\x1b\\", DA1_PLAIN]), None) == ""
    assert forced_warning("sixel", None, None) == ""  # nothing asked, nothing against it
    assert forced_warning("iterm2", plain, None) == ""  # no answer says whether a terminal shows them
    assert forced_warning("auto", TMUX_33, "tmux") == forced_warning("halfblock", None, "tmux") == ""
    assert choose_graphics("auto", Replies(sixel=True, complete=True)).warning == ""
    assert forced_warning("kitty", None, "GNU screen") == \
        f"graphics: kitty, as asked; inside GNU screen, its pictures may not reach the terminal — {FIX}"


class Features(App):
    """An app holding the terminal's features, as SdtuiApp does."""

    def __init__(self) -> None:
        super().__init__()
        self.terminal = TerminalFeatures(self)


@pytest.mark.asyncio
async def test_the_warning_is_logged_once_when_the_answer_repeats_the_choice(caplog):
    app = Features()
    async with app.run_test(size=(40, 10)):
        with caplog.at_level(logging.INFO, logger="tui.client.app"):
            app.terminal.use_graphics(Choice("sixel", "set to sixel"))  # at once, before the answers
            app.terminal.use_graphics(choose_graphics("sixel", TMUX_33, FACTS))  # the answers are in
            app.terminal.use_graphics(choose_graphics("sixel", TMUX_33, FACTS))
    lines = [(record.levelname, record.getMessage()) for record in caplog.records if record.name == "tui.client.app"]
    assert lines == [("INFO", "pictures: sixel (set to sixel)"),
                     ("WARNING", choose_graphics("sixel", TMUX_33, FACTS).warning)]
