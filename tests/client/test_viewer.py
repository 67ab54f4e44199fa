"""The full-screen viewer, on images made by the real engine with the demo model; and the
zoom arithmetic it rests on."""

import pytest

from tests.app_helpers import generate_each, make_app, make_recording_app, wait_for
from tui.client.screens.compare import CompareScreen
from tui.client.screens.confirm import ConfirmScreen
from tui.client.screens.history import HistoryScreen
from tui.client.screens.viewer import ViewerScreen
from tui.client.widgets.log import LogPanel
from tui.client.widgets.zoom import ZoomView, fit_scale, view_window, zoom_steps

SIZE = (100, 30)


def test_zoom_steps_start_at_fit_and_skip_scales_smaller_than_fit():
    assert zoom_steps((512, 512), (100, 27)) == [None, 0.25, 0.5, 1.0, 2.0]  # fit is 0.105: 0.125 is no step
    fit = fit_scale((512, 512), (100, 27))
    assert fit == pytest.approx(54 / 512)
    assert zoom_steps((64, 64), (100, 27)) == [None, 1.0, 2.0]  # 1:1 kept though only 19% larger than fit
    assert zoom_steps((16, 16), (100, 27)) == [None]  # fit is already larger than 2:1


def test_view_window_stays_inside_the_image():
    window = view_window((512, 512), (100, 27), 1.0, (0, 0))
    assert window.box == (0, 0, 100, 54) and window.size == (100, 54)
    window = view_window((512, 512), (100, 27), 1.0, (10_000, 10_000))
    assert window.box == (412, 458, 512, 512)
    window = view_window((512, 512), (100, 27), 2.0, (256, 256))
    assert window.box == (231, 242, 281, 269) and window.size == (100, 54)
    # Zoomed out further than the image: all of it, drawn at its scaled size.
    window = view_window((512, 256), (100, 27), 0.125, (256, 128))
    assert window.box == (0, 0, 512, 256) and window.size == (64, 32)


async def open_viewer(pilot, app) -> ViewerScreen:
    await pilot.press("ctrl+o")
    await wait_for(pilot, lambda: isinstance(app.screen, ViewerScreen), what="the viewer")
    await pilot.pause(0.2)
    return app.screen


def caption(screen) -> str:
    return screen.query_one("#viewer-caption").text.plain


@pytest.mark.asyncio
async def test_viewer_opens_the_latest_zooms_pans_steps_and_closes(sdtui_home):
    app = make_app(steps=2, width=256, height=256)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.screen is app.main_screen and app.focused is not None)
        await pilot.pause(0.2)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: any("No image yet" in n.message for n in app._notifications), timeout=10,
                       what="the no-image note")
        assert app.screen is app.main_screen
        await generate_each(pilot, app, ("old fox", "new owl"))
        screen = await open_viewer(pilot, app)
        picture = screen.query_one(ZoomView)
        assert screen.entry.prompt == "new owl" and picture.image.size == (256, 256)
        text = caption(screen)
        for part in ("new owl", "seed 7", "256x256", "2 steps", "DPM++ 2M Karras", "demo model", "zoom fit"):
            assert part in text, text
        # The whole terminal: the picture fills every row but the caption and the footer.
        assert picture.size.height == SIZE[1] - 3 and picture.picture_size[1] == (SIZE[1] - 3) * 2

        assert picture.visible_box() == (0, 0, 256, 256)
        await pilot.press("plus")  # fit is 21%: 25% would be no step, so 50%
        assert picture.scale == 0.5 and "zoom 50%" in caption(screen)
        await pilot.press("plus")
        assert picture.scale == 1.0
        box = picture.visible_box()
        assert box[2] - box[0] == 100 and box[3] - box[1] == 54  # one image pixel per half-block pixel
        await pilot.press("right", "down")
        moved = picture.visible_box()
        assert moved[0] > box[0] and moved[1] > box[1]
        await pilot.pause()
        assert picture.picture_size == (100, 54)
        await pilot.press("minus")
        assert picture.scale == 0.5
        await pilot.press("0")
        assert picture.scale is None and picture.visible_box() == (0, 0, 256, 256)

        await pilot.press("n")
        assert screen.entry.prompt == "old fox" and "old fox" in caption(screen)
        await pilot.press("n")
        assert screen.entry.prompt == "old fox"
        assert any("oldest image" in n.message for n in app._notifications)
        await pilot.press("p")
        assert screen.entry.prompt == "new owl"
        await pilot.press("escape")
        assert app.screen is app.main_screen


@pytest.mark.asyncio
async def test_history_keys_work_in_the_viewer(sdtui_home):
    app = make_recording_app(steps=2)
    async with app.run_test(size=SIZE) as pilot:
        await generate_each(pilot, app, ("keep me", "delete me"))
        screen = await open_viewer(pilot, app)
        await pilot.press("c")
        assert app.clipboard == screen.entry.image_path
        await pilot.press("r")
        await wait_for(pilot, lambda: app.history.count() == 3 and not app.session.busy, what="the re-run")
        log = app.main_screen.query_one(LogPanel)
        assert any("queued (the same image again)" in line and '"delete me"' in line for line in log.lines_written)
        again = app.history.recent(1)[0]
        assert (again.prompt, again.seed) == ("delete me", 7)
        await pilot.press("v")
        await wait_for(pilot, lambda: app.history.count() == 7 and not app.session.busy, what="the variations")
        assert any("queued (4 variations)" in line for line in log.lines_written)
        assert "Queued: the same image again (seed 7)." in app.notified
        assert "Queued: 4 variations with new seeds." in app.notified

        doomed = screen.entry
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.screen is screen)
        assert app.history.get(doomed.id) is None
        assert screen.entry is not None and screen.entry.id != doomed.id
        await pilot.press("l")
        await wait_for(pilot, lambda: app.screen is app.main_screen)
        assert app.main_screen.query_one("#prompt").value == screen.entry.prompt


@pytest.mark.asyncio
async def test_history_and_compare_open_the_viewer(sdtui_home):
    app = make_app(steps=2)
    async with app.run_test(size=(120, 40)) as pilot:
        await generate_each(pilot, app, ("first", "second"))
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen))
        await pilot.press("down", "o")
        await wait_for(pilot, lambda: isinstance(app.screen, ViewerScreen))
        assert app.screen.entry.prompt == "first"
        await pilot.press("escape")
        history = app.screen
        history.query_one("#large").focus()  # Enter on the large view
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ViewerScreen))
        assert app.screen.entry.prompt == "first"
        await pilot.press("escape")
        history.query_one("#table").focus()
        await pilot.press("space", "up", "space", "equals_sign")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        await pilot.press("tab", "enter")  # the right-hand picture
        await wait_for(pilot, lambda: isinstance(app.screen, ViewerScreen))
        assert app.screen.entry.id == app.screen_stack[-2].second.id
        shown = {b.binding.description for b in app.active_bindings.values() if b.binding.show}
        assert {"Close", "Zoom in", "Older", "Re-run"} <= shown and "Cancel" not in shown

