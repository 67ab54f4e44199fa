"""What the app shows and keeps for the length of one run: a locked seed (on screen, not in
config.toml), settings changed by key with the panel hidden, the history screen while jobs run,
Ctrl+T followed at once by typing, and what the caption says after a cancel."""

import pytest

from tests.app_helpers import make_recording_app, submit_prompt, type_prompt, wait_for, wait_loaded
from tests.scripted_engine import scripted
from tests.client.test_app_fixes import keys_at_once
from tui.config import load_settings
from tui.client.widgets.settings import SettingsPanel

pytestmark = pytest.mark.asyncio
NARROW = (80, 24)  # the settings panel starts hidden below 120 columns


def header_text(app) -> str:
    from textual.widgets._header import HeaderTitle

    return str(app.screen.query_one(HeaderTitle).render())


def toasts(app) -> list[str]:
    """The notifications showing now (a slow test machine may let a short one expire first)."""
    return [notification.message for notification in app._notifications]


async def make_one_image(pilot, app, prompt: str = "a red fox") -> None:
    await wait_loaded(pilot, app)
    count = app.history.count()
    await submit_prompt(pilot, app, prompt)
    await wait_for(pilot, lambda: app.history.count() > count and not app.session.busy, what="the image")


async def test_a_locked_seed_holds_for_the_run_shows_in_the_header_and_stays_out_of_config(sdtui_home):
    app = make_recording_app(engine=scripted(), seed="random", steps=2)
    config = app.places.config_file
    async with app.run_test(size=NARROW) as pilot:
        await make_one_image(pilot, app)
        seed = app.history.latest_done().seed
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert app.session.settings.seed == seed
        assert f"seed {seed} locked" in header_text(app), "at 80 columns, with no settings panel"
        await pilot.press("f6")  # another setting: saved as before
        await wait_for(pilot, lambda: config.exists() and "steps = 3" in config.read_text(), what="steps saved")
        assert load_settings(config).seed == "random", "the lock is not written for later runs and the CLI"
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert "locked" not in header_text(app)
        await pilot.press("ctrl+g")  # the last image's seed, locked again
        await pilot.pause()
        assert f"seed {seed} locked" in header_text(app)
        app.palette.save_seed()  # asked for: now it is config.toml's
        assert load_settings(config).seed == seed
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert load_settings(config).seed == seed, "unlocking in the app leaves the saved default alone"


async def test_a_seed_in_config_starts_locked_and_is_shown(sdtui_home):
    app = make_recording_app(engine=scripted(), seed=1234)
    async with app.run_test(size=NARROW) as pilot:
        await pilot.pause()
        assert "seed 1234 locked" in header_text(app)


async def test_function_keys_say_the_new_value_when_the_panel_is_hidden_in_one_toast(sdtui_home):
    app = make_recording_app(engine=scripted(), steps=20, guidance=7.0)
    async with app.run_test(size=NARROW) as pilot:
        await wait_loaded(pilot, app)
        assert app.main_screen.query_one(SettingsPanel).has_class("hidden")
        for _ in range(3):
            await pilot.press("f6")
        await pilot.pause()
        assert app.toast_slots.shown["steps"].message == "Steps 23 for the next job."
        assert [t for t in toasts(app) if t.startswith("Steps")] in (["Steps 23 for the next job."], []), \
            "one toast, replaced, not one a press"
        await pilot.press("f7")
        await pilot.pause()
        assert app.toast_slots.shown["guidance"].message == "Guidance 6.5 for the next job."
        assert app.main_screen.query_one("#setting-guidance").value == "6.5"


async def test_guidance_shows_one_way_from_the_start(sdtui_home):
    app = make_recording_app(engine=scripted(), guidance=7.0)
    async with app.run_test(size=(120, 40)) as pilot:
        field = app.main_screen.query_one("#setting-guidance")
        assert field.value == "7"
        await pilot.press("f8", "f7")
        await pilot.pause()
        assert field.value == "7"


async def test_typing_right_after_ctrl_t_goes_to_the_prompt(sdtui_home):
    app = make_recording_app(engine=scripted())
    async with app.run_test(size=(120, 40)) as pilot:
        guidance = app.main_screen.query_one("#setting-guidance")
        guidance.focus()
        await pilot.pause()
        prompt = app.main_screen.query_one("#prompt")
        prompt.value = ""
        keys_at_once(app, ["ctrl+t", *"fox"])
        await wait_for(pilot, lambda: prompt.value == "fox" or guidance.value != "7", timeout=5, what="the keys")
        assert (prompt.value, guidance.value) == ("fox", "7")


async def test_the_open_history_screen_shows_new_images_and_progress(sdtui_home):
    from tui.client.screens.history import HistoryScreen

    app = make_recording_app(engine=scripted(step_s=0.02), steps=40)  # variations keep its steps: 0.8 s to watch
    async with app.run_test(size=(120, 40)) as pilot:
        await make_one_image(pilot, app, "the first")
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), what="the history screen")
        history = app.screen
        assert len(history.entries) == 1
        await pilot.press("v")  # four variations of the selected entry, queued from this screen
        progress = history.query_one("#progress")
        await wait_for(pilot, lambda: progress.display and "step" in str(progress.render()),
                       what="progress on the history screen")
        await wait_for(pilot, lambda: len(history.entries) >= 2, timeout=120, what="a new row while open")
        assert history.selected.prompt == "the first", "the selected entry stays selected"
        await wait_for(pilot, lambda: app.session.waiting == 0 and not app.session.busy, timeout=180,
                       what="the variations")
        await wait_for(pilot, lambda: len(history.entries) == 5 and not progress.display, what="the last row")
        assert app.screen is history


async def test_strength_shows_on_the_history_screen_and_its_toast_keeps_its_brackets(sdtui_home):
    from tui.client.screens.history import HistoryScreen

    app = make_recording_app(engine=scripted(), steps=2)
    async with app.run_test(size=(120, 40)) as pilot:
        await make_one_image(pilot, app)
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), what="the history screen")
        for _ in range(3):
            await pilot.press("left_square_bracket")
        await pilot.pause()
        assert "strength: 0.35 ([ ])" in str(app.screen.query_one("#filter-text").render())
        assert app.toast_slots.shown["strength"].message == "Image-to-image strength 0.35 (g uses it)."
        assert len([t for t in toasts(app) if "strength" in t]) <= 1
        await pilot.press("g")
        await wait_for(pilot, lambda: any("([ and ] change it)" in t for t in app.notified), timeout=5,
                       what="the queued toast")
        shown = next(n for n in app._notifications if "change it" in n.message)
        assert not shown.markup, "as plain text, so the brackets show"


async def test_after_a_cancel_the_caption_no_longer_says_generating(sdtui_home):
    from tui.client.widgets.status import StatusPanel

    app = make_recording_app(engine=scripted(step_s=0.05), steps=400)  # 20 s: only the cancel ends it
    async with app.run_test(size=(120, 40)) as pilot:
        await submit_prompt(pilot, app, "stopped early")
        status = app.main_screen.query_one(StatusPanel)
        await wait_for(pilot, lambda: status.state == "generating" and status.step_times, what="the job")
        await pilot.press("escape")
        await wait_for(pilot, lambda: status.state == "cancelled", what="the cancel")
        await pilot.pause(0.2)
        caption = str(app.main_screen.query_one("#caption").render())
        assert "generating" not in caption and caption.startswith("cancelled: stopped early"), caption


async def test_a_footer_shows_only_whole_keys_before_the_palette_key(sdtui_home):
    from textual.widgets._footer import FooterKey

    from tui.client.screens.history import HistoryScreen

    app = make_recording_app(engine=scripted())
    async with app.run_test(size=NARROW) as pilot:
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), what="the history screen")
        for width in (80, 64):
            await pilot.resize_terminal(width, 24)
            await pilot.pause(0.3)
            keys = list(app.screen.query(FooterKey))
            palette = next(k for k in keys if k.has_class("-command-palette"))
            shown = [k for k in keys if k.display and k is not palette]
            assert shown and all(k.region.right <= palette.region.x for k in shown), \
                [(k.key, k.region) for k in shown]
            assert len(shown) < len(keys) - 1, "some keys do not fit at this width"


async def test_clearing_the_queue_leaves_the_running_jobs_progress_alone(sdtui_home):
    from tui.client.widgets.status import StatusPanel

    app = make_recording_app(engine=scripted(step_s=0.05), steps=400)  # 20 s: only the cancel ends it
    async with app.run_test(size=(120, 40)) as pilot:
        await submit_prompt(pilot, app, "the running one")
        await type_prompt(pilot, "the waiting one")
        await pilot.press("enter")
        status = app.main_screen.query_one(StatusPanel)
        await wait_for(pilot, lambda: status.state == "generating" and status.step_times and app.session.waiting == 1,
                       what="one job running, one waiting")
        await pilot.press("f9")  # the waiting job is dropped and ends (JobDone) while the first runs
        await wait_for(pilot, lambda: app.session.waiting == 0, what="the queue to clear")
        await pilot.pause(0.5)
        assert status.state == "generating" and app.session.busy
        await pilot.press("escape")
        await wait_for(pilot, lambda: status.state == "cancelled", what="the cancel")
