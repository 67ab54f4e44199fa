"""More of the app: start-up before torch, queueing while loading, resize, swap warning, bell,
download progress, and the pieces behind the widgets."""

import subprocess
import sys
import textwrap

import pytest

from tests.app_helpers import make_app, submit_prompt, type_prompt, wait_connected, wait_for, wait_loaded
from tests.scripted_engine import scripted
from tui.engine.events import DownloadProgress, Notice
from tui.client.widgets.prompt import PromptRecall
from tui.client.widgets.stage import SIDE_MIN, picture_width
from tui.client.widgets.status import StatusPanel, eta_seconds
from tui.client.widgets.settings import SettingsPanel
from tui.client.widgets.thumbnail import Thumbnail, fit_size
from tui.text import visible


@pytest.mark.parametrize("inline", [False, True], ids=["client of a server", "engine in the app"])
def test_first_frame_comes_before_torch_is_imported(tmp_path, inline):
    """As a client the app never imports torch; with --no-server it does, after the first frame."""
    script = textwrap.dedent("""
        import asyncio, os, sys
        os.environ["SDTUI_HOME"] = sys.argv[1]
        from tui.client.app import SdtuiApp
        from tui.config import Settings
        from tui.locations import locations
        from tui.server.host import in_process

        seen = {}

        async def main():
            host = in_process(locations()) if sys.argv[2] == "1" else None
            app = SdtuiApp(Settings(model="demo"), host=host)
            start = app.session.start

            def probe():
                seen["torch at first frame"] = "torch" in sys.modules
                start()

            app.session.start = probe
            async with app.run_test() as pilot:
                while app.session.model is None:
                    await pilot.pause(0.05)
            print(seen["torch at first frame"], "torch" in sys.modules)

        asyncio.run(main())
    """)
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path), "1" if inline else "0"],
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", str(inline)], result.stderr


@pytest.mark.asyncio
async def test_enter_while_the_model_loads_queues_the_job(sdtui_home):
    app = make_app(engine=scripted(load_s=1.0), steps=2)  # the load lasts while the prompt is typed
    async with app.run_test(size=(120, 40)) as pilot:
        await type_prompt(pilot, "early bird")
        await pilot.press("enter")
        assert not app.session.hosted.server.engine.loaded or app.session.waiting <= 1
        await wait_for(pilot, lambda: app.session.last_path is not None, what="the queued job")
        assert app.session.hosted.server.engine.loaded


@pytest.mark.asyncio
async def test_thumbnail_fills_its_panel_and_re_renders_on_resize(sdtui_home):
    app = make_app(engine=scripted(), steps=2, width=256, height=128)
    async with app.run_test(size=(120, 40)) as pilot:
        await submit_prompt(pilot, app, "wide")
        await wait_for(pilot, lambda: app.session.last_path is not None)
        thumbnail = app.main_screen.query_one("#preview", Thumbnail)
        await pilot.pause()
        first = thumbnail.picture_size
        await pilot.resize_terminal(160, 50)
        await pilot.pause(0.2)
        second = thumbnail.picture_size
        assert second[0] > first[0] and second[0] / second[1] == pytest.approx(2.0, rel=0.1)


@pytest.mark.asyncio
async def test_swap_warning_stands_out_while_it_lasts(sdtui_home):
    app = make_app(engine=scripted())
    async with app.run_test(size=(120, 40)) as pilot:
        status = app.main_screen.query_one(StatusPanel)
        await wait_connected(pilot, app)
        app.session.hosted.server._report(Notice("swap grew by 1.0 GB during this job: the system is short of memory", "warning"))
        await wait_for(pilot, lambda: status.has_class("swapping"))
        assert "swap grew" in str(status.query_one("#swap-warning").render())
        status.job_ended("done")
        assert not status.has_class("swapping")


@pytest.mark.asyncio
async def test_bell_and_a_notification_when_the_queue_empties_out_of_focus(sdtui_home):
    app = make_app(engine=scripted(), steps=1)
    rings, written = [], []
    async with app.run_test(size=(120, 40)) as pilot:
        app.bell = lambda: rings.append(1)
        app.terminal.write = written.append
        await submit_prompt(pilot, app, "focused")
        await wait_for(pilot, lambda: app.session.last_path is not None)
        assert rings == []
        app.app_focus = False  # the terminal reported focus lost; no widget has focus now
        app.session.last_path = None
        app.main_screen.query_one(SettingsPanel).set_value("count", 2)
        assert app.main_screen.submit_prompt()
        await wait_for(pilot, lambda: app.history.count() == 3 and not app.session.busy, what="two more images")
        await wait_for(pilot, lambda: rings, what="the bell")
        assert rings == [1], "one bell when the queue empties, not one per image"
        assert written == ["\x1b]9;sdtui: 2 images done\x07\x1b]777;notify;sdtui;2 images done\x07"
                           "\x1b]99;;sdtui: 2 images done\x1b\\"]


@pytest.mark.asyncio
async def test_download_progress_shows_bytes_and_rate(sdtui_home):
    app = make_app(engine=scripted())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot, app)
        app.session.hosted.server._report(DownloadProgress("owner/model", 0, 4 * 1024**3))
        await pilot.pause(0.2)
        app.session.hosted.server._report(DownloadProgress("owner/model", 1024**3, 4 * 1024**3))
        await pilot.pause(0.1)
        caption = str(app.main_screen.query_one("#caption").render())
        assert "downloading owner/model" in caption and "1.0 GB of 4.0 GB at" in caption and "left" in caption


@pytest.mark.parametrize("image,cells,expected", [
    ((512, 512), (80, 24), (48, 48)),
    ((64, 64), (100, 30), (60, 60)),
    ((1024, 512), (40, 40), (40, 20)),
    ((512, 1024), (100, 10), (10, 20)),
    ((8, 8), (1, 1), (1, 2)),
])
def test_fit_size_keeps_aspect_and_even_height(image, cells, expected):
    assert fit_size(image, cells) == expected


@pytest.mark.parametrize("stage,aspect,expected", [
    ((98, 21), 1.0, 42),  # 100x30: a square image fills the stage's height, the rest is the side column
    ((98, 21), 1.5, 63),  # a wider image takes more columns
    ((98, 40), 1.0, 98 - SIDE_MIN),  # the side column keeps its minimum
    ((20, 40), 1.0, 8),  # never narrower than 8 columns
])
def test_picture_width_follows_the_aspect_at_full_height(stage, aspect, expected):
    assert picture_width(*stage, aspect) == expected


def test_eta_uses_the_median_step_time():
    assert eta_seconds([5.0, 1.0, 1.0, 1.0], 10) == pytest.approx(10.0)
    assert eta_seconds([], 10) == 0.0


def test_prompt_recall_order_and_draft():
    recall = PromptRecall(["newest", "older", "newest", "oldest"])
    assert recall.older("draft") == "newest"
    assert recall.older("newest") == "older"
    assert recall.older("older") == "oldest"
    assert recall.older("oldest") == "oldest"
    assert recall.newer("oldest") == "older"
    assert recall.newer("older") == "newest"
    assert recall.newer("newest") == "draft"
    recall.remember("older")
    assert recall.prompts[:2] == ["older", "newest"]


@pytest.mark.parametrize("text,expected", [
    ("[bold]x[/bold]", "[bold]x[/bold]"),
    ("\x1b[31mred", "\\x1b[31mred"),
    ("\x1b]52;c;aGk=\x07", "\\x1b]52;c;aGk=\\x07"),
    ("\x1b]8;;http://x\x1b\\link", "\\x1b]8;;http://x\\x1b\\link"),
    ("a\x00b\x7fc\x9bd", "a\\x00b\\x7fc\\x9bd"),
    ("\u202eevil", "\\u202eevil"),
    ("עברית 🦊 日本", "עברית 🦊 日本"),
    ("two\nlines", "two⏎ lines"),
])
def test_visible_neutralises_control_characters(text, expected):
    assert visible(text) == expected


def test_half_block_cells_match_rich_pixels_rendering():
    """Our fast cell builder draws exactly what rich-pixels' half-block renderer draws
    (for colours already on the 6-bit grid it quantises to)."""
    import io

    from PIL import Image
    from rich.console import Console
    from rich_pixels import Pixels

    from tui.client.widgets.thumbnail import half_block_segments

    picture = Image.effect_noise((24, 16), 60).convert("RGB").point(lambda v: v & 0xFC)

    def rendered(renderable) -> str:
        console = Console(file=io.StringIO(), width=80, color_system="truecolor")
        console.print(renderable)
        return console.file.getvalue()

    ours = rendered(Pixels.from_segments(half_block_segments(picture)))
    assert ours == rendered(Pixels.from_image(picture))
    assert ours.count("▄") == 24 * 8


@pytest.mark.asyncio
async def test_showing_the_same_image_again_does_not_redraw_it():
    from PIL import Image
    from textual.app import App

    class One(App):
        def compose(self):
            yield Thumbnail(id="t")

    picture = Image.effect_noise((64, 64), 50).convert("RGB")
    async with One().run_test(size=(40, 20)) as pilot:
        thumbnail = pilot.app.query_one(Thumbnail)
        thumbnail.show(picture)
        await pilot.pause()
        drawn = thumbnail._strips
        assert drawn is not None
        thumbnail.show(picture)
        await pilot.pause()
        assert thumbnail._strips is drawn
        thumbnail.show(picture.copy())
        await pilot.pause()
        assert thumbnail._strips is not drawn


@pytest.mark.asyncio
async def test_a_settings_key_typed_ahead_at_start_works_before_the_hidden_panels_fields_are_made(sdtui_home):
    """On a narrow terminal the panel's fields are made after the first frame; F6 at once still
    reaches them (the panel makes them when first asked)."""
    from tests.app_helpers import make_app
    from tests.scripted_engine import scripted

    app = make_app(engine=scripted(), steps=4)
    async with app.run_test(size=(80, 24)) as pilot:
        panel = app.main_screen.query_one(SettingsPanel)
        assert panel.has_class("hidden")
        await panel.remove_children()  # as in the moment before the first frame's refresh made them
        panel._built = False
        app.main_screen.action_adjust("steps", 1)
        await pilot.pause()
        assert app.session.settings.steps == 5
        await panel.build()  # what the timer after the first frame does
        await pilot.pause()
        assert panel.query_one("#setting-steps").value == "5"


@pytest.mark.asyncio
async def test_a_value_set_while_the_hidden_panels_fields_are_being_made_is_kept(sdtui_home):
    """A field posts its first value when it mounts; a seed loaded from an imported image while the
    fields were being made must not be undone by that message arriving afterwards."""
    import asyncio

    app = make_app(engine=scripted(), steps=2)
    async with app.run_test(size=(100, 30)) as pilot:
        panel = app.main_screen.query_one(SettingsPanel)
        await panel.remove_children()
        panel._built = False
        building = asyncio.create_task(panel.build())
        await asyncio.sleep(0)  # the fields are being made
        panel.set_value("seed", 119080905858220)
        await building
        await pilot.pause()
        await pilot.pause()
        assert app.session.settings.seed == 119080905858220
        assert panel.query_one("#setting-seed").value == "119080905858220"
        assert panel.query_one("#seed-lock").value is True


@pytest.mark.asyncio
async def test_the_garbage_collector_is_back_on_after_the_first_frame(sdtui_home):
    """The command line turns it off while the app starts (tui/cli/main.py); left off, an app open
    all day would keep every reference cycle it ever made."""
    import gc

    gc.disable()
    try:
        app = make_app(engine=scripted(), steps=2)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            assert gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()
