"""The history screen, on a history made through the app by the scripted engine (the subject is the
screen: a list, a large view, parameters, re-runs, deletes and comparing)."""

import json
import os
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.app_helpers import generate_each, make_app, plain, wait_for
from tests.scripted_engine import scripted
from tui.client.screens.compare import CompareScreen
from tui.client.screens.confirm import ConfirmScreen
from tui.client.screens.history import HistoryScreen
from tui.store.history import HistoryEntry
from tui.client.widgets.settings import SettingsPanel
from tui.client.widgets.thumbnail import Thumbnail

pytestmark = pytest.mark.asyncio
SIZE = (120, 40)
PROMPTS = ("alpha fox", "beta whale", "gamma owl")


async def made(pilot, app, prompts=PROMPTS):
    await generate_each(pilot, app, prompts)


async def open_history(pilot, app):
    await pilot.press("f2")
    await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen))
    await pilot.pause(0.3)
    return app.screen


async def test_lists_newest_first_with_a_large_view_and_parameters(sdtui_home):
    app = make_app(engine=scripted(), steps=2)
    async with app.run_test(size=SIZE) as pilot:
        await made(pilot, app)
        screen = await open_history(pilot, app)
        assert [e.prompt for e in screen.entries] == ["gamma owl", "beta whale", "alpha fox"]
        large = screen.query_one("#large", Thumbnail)
        assert large.image is not None and large.image.size == (128, 128)
        params = plain(screen.query_one("#param-text"))
        assert "gamma owl" in params and "DPM++ 2M Karras" in params and "128x128" in params
        await pilot.press("escape")
        assert app.screen is app.main_screen


async def test_load_rerun_and_variations(sdtui_home):
    app = make_app(engine=scripted(), steps=2)
    async with app.run_test(size=SIZE) as pilot:
        await made(pilot, app)
        app.main_screen.query_one(SettingsPanel).set_value("steps", 9)
        await open_history(pilot, app)
        await pilot.press("down")  # beta whale
        await pilot.press("r")
        await wait_for(pilot, lambda: app.history.count() == 4 and not app.session.busy)
        rerun = app.history.recent(1)[0]
        assert (rerun.prompt, rerun.seed, rerun.steps) == ("beta whale", 7, 2)
        original = [e for e in app.history.search("beta whale") if e.id != rerun.id][0]
        assert Image.open(rerun.image_path).tobytes() == Image.open(original.image_path).tobytes()
        await pilot.press("v")
        await wait_for(pilot, lambda: app.history.count() == 8 and not app.session.busy, what="variations")
        variations = app.history.recent(4)
        assert {v.prompt for v in variations} == {"beta whale"} and len({v.seed for v in variations}) == 4
        await pilot.press("l")
        await wait_for(pilot, lambda: app.screen is app.main_screen)
        assert app.main_screen.query_one("#prompt").value == "beta whale"
        settings = app.session.settings
        assert (settings.steps, settings.seed) == (2, 7)


async def test_search_as_you_type_and_filters(sdtui_home):
    app = make_app(engine=scripted(), steps=2)
    async with app.run_test(size=SIZE) as pilot:
        await made(pilot, app)
        app.history.add(HistoryEntry.for_request(app.history.recent(1)[0].request(), "failed", error="boom"))
        screen = await open_history(pilot, app)
        assert screen.total == 4
        await pilot.press("slash", *"WHALE")
        await wait_for(pilot, lambda: screen.total == 1)
        assert screen.entries[0].prompt == "beta whale"
        await pilot.press("escape")  # leaves the search box, not the screen
        assert isinstance(app.screen, HistoryScreen)
        screen.query_one("#search").value = ""
        await wait_for(pilot, lambda: screen.total == 4)
        await pilot.press("s")  # done
        assert screen.status == "done" and screen.total == 3
        await pilot.press("s")  # cancelled
        assert screen.total == 0
        await pilot.press("s")  # failed
        assert screen.total == 1 and screen.entries[0].status == "failed"
        assert "no image: failed" in screen.query_one("#large", Thumbnail).placeholder
        await pilot.press("s", "m")
        assert screen.status is None and screen.model == "demo model (random weights)" and screen.total == 3


async def test_delete_asks_first_then_removes_row_and_file(sdtui_home):
    app = make_app(engine=scripted(), steps=2)
    async with app.run_test(size=SIZE) as pilot:
        await made(pilot, app, prompts=("only one",))
        screen = await open_history(pilot, app)
        path = Path(screen.entries[0].image_path)
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert path.exists() and app.history.count() == 1
        await pilot.press("d")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.history.count() == 0)
        assert not path.exists()
        assert screen.entries == [] and screen.total == 0
        assert screen.query_one("#large", Thumbnail).placeholder == "no entries"
        await pilot.press("r", "v", "l", "c", "down", "equals_sign")  # an empty screen stays usable
        assert isinstance(app.screen, HistoryScreen)


async def test_missing_file_shows_as_missing(sdtui_home):
    app = make_app(engine=scripted(), steps=2)
    async with app.run_test(size=SIZE) as pilot:
        await made(pilot, app, prompts=("vanishing",))
        os.remove(app.history.recent(1)[0].image_path)
        app.history.reconcile()
        screen = await open_history(pilot, app)
        assert screen.query_one("#large", Thumbnail).placeholder == "image file missing"
        table = screen.query_one("#table")
        assert "missing" in [str(cell) for cell in table.get_row_at(0)]


async def test_copy_and_show_path(sdtui_home):
    app = make_app(engine=scripted(), steps=2)
    async with app.run_test(size=SIZE) as pilot:
        await made(pilot, app, prompts=("copy me",))
        await open_history(pilot, app)
        await pilot.press("c")
        assert app.clipboard == app.history.recent(1)[0].image_path
        await pilot.press("p")
        assert any(n.message == app.clipboard for n in app._notifications)


async def test_compare_highlights_the_differences(sdtui_home):
    app = make_app(engine=scripted(), steps=2)
    async with app.run_test(size=SIZE) as pilot:
        await made(pilot, app, prompts=("same prompt",))
        app.main_screen.query_one(SettingsPanel).set_value("steps", 3)
        await made(pilot, app, prompts=("same prompt",))
        await open_history(pilot, app)
        await pilot.press("space", "down", "equals_sign")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        first, second = app.screen.first, app.screen.second
        assert {first.steps, second.steps} == {2, 3}
        text = plain(app.screen.query_one("#compare-table"))
        assert "same prompt" in text
        grid = app.screen.query_one("#compare-table").content
        styles = {str(cell): cell.style for cell in grid.columns[0]._cells}
        assert styles["steps"] == "bold yellow" and styles["prompt"] == "" and styles["seed"] == ""


async def test_recent_strip_opens_the_history_at_that_entry(sdtui_home):
    app = make_app(engine=scripted(), steps=2)
    async with app.run_test(size=SIZE) as pilot:
        await made(pilot, app)
        strip_items = list(app.main_screen.query("StripItem"))
        assert [item.entry_id is not None for item in strip_items[:4]] == [True, True, True, False]
        assert strip_items[0].image is not None
        second = strip_items[1]
        second.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen))
        await pilot.pause(0.2)
        assert app.screen.selected.id == second.entry_id and app.screen.selected.prompt == "beta whale"


def comfy_png(path):
    graph = {"3": {"class_type": "KSampler", "inputs": {"seed": 99, "steps": 12, "cfg": 5, "sampler_name": "euler",
                                                       "scheduler": "normal", "positive": ["6", 0],
                                                       "negative": ["7", 0], "latent_image": ["5", 0]}},
             "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 640, "height": 448}},
             "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "comfy castle"}},
             "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "fog"}}}
    meta = PngInfo()
    meta.add_text("prompt", json.dumps(graph))
    Image.new("RGB", (8, 8)).save(path, pnginfo=meta)


async def test_import_a_png_into_the_main_screen(sdtui_home, tmp_path):
    app = make_app(engine=scripted(), steps=2)
    comfy_png(tmp_path / "comfy.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "bare.png")
    async with app.run_test(size=SIZE) as pilot:
        await open_history(pilot, app)
        await pilot.press("i")
        app.screen.query_one("#answer").value = str(tmp_path / "bare.png")
        await pilot.press("enter")
        await pilot.pause()
        assert any("no generation parameters found" in n.message for n in app._notifications)
        await pilot.press("i")
        app.screen.query_one("#answer").value = str(tmp_path / "comfy.png")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is app.main_screen)
        assert app.main_screen.query_one("#prompt").value == "comfy castle"
        assert app.main_screen.query_one("#negative").value == "fog"
        settings = app.session.settings
        assert (settings.steps, settings.guidance, settings.width, settings.height, settings.seed,
                settings.scheduler) == (12, 5.0, 640, 448, 99, "Euler")


async def test_marks_show_in_the_list_and_a_third_is_refused(sdtui_home):
    app = make_app(engine=scripted(), steps=2)
    async with app.run_test(size=(80, 24)) as pilot:
        await made(pilot, app)
        screen = await open_history(pilot, app)
        table = screen.query_one("#table")
        assert "seed" in [str(c.label) for c in table.columns.values()]
        assert str(table.get_row_at(0)[3]) == "7"  # the seed column, whole
        await pilot.press("space", "down", "space", "down", "space")
        assert [str(table.get_row_at(i)[0]) for i in range(3)] == ["●", "●", ""]
        assert len(screen.marked) == 2
        assert any("Two entries are marked already" in n.message for n in app._notifications)
        await pilot.press("up", "space")
        assert [str(table.get_row_at(i)[0]) for i in range(3)] == ["●", "", ""]
