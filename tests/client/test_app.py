"""The app, driven from the keyboard with Pilot: one generation end to end on the real engine and
the demo model; the keys, the queue and cancelling on the scripted engine (milliseconds a job)."""

import sqlite3
import time
from pathlib import Path

import pytest

from tests.app_helpers import generate_each, make_app, type_prompt, wait_for, wait_loaded
from tests.scripted_engine import scripted
from tui.config import load_settings
from tui.client.widgets.log import LogPanel
from tui.client.widgets.settings import SettingsPanel
from tui.client.widgets.status import StatusPanel
from tui.client.widgets.thumbnail import Thumbnail

pytestmark = pytest.mark.asyncio
SIZE = (120, 40)


def rows(home: Path):
    db = sqlite3.connect(home / "history.db")
    return db.execute("SELECT prompt, seed, status, image_path, steps FROM generations ORDER BY id").fetchall()


async def test_prompt_enter_generates_and_shows_the_final_image(sdtui_home):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot, app)
        assert "demo model (random weights)" in app.sub_title
        await type_prompt(pilot, "a red fox")
        await pilot.press("enter")
        screen = app.main_screen
        await wait_for(pilot, lambda: app.session.last_path is not None, what="the image")
        status = screen.query_one(StatusPanel)
        await wait_for(pilot, lambda: status.state == "done", what="the job to end")
        assert "4/4" in str(screen.query_one("#progress-text").render())
        thumbnail = screen.query_one("#preview", Thumbnail)
        assert thumbnail.image is not None and thumbnail.image.size == (128, 128)
        assert Path(app.session.last_path).exists()
        assert rows(sdtui_home) == [("a red fox", 7, "done", app.session.last_path, 4)]
        log_text = "\n".join(screen.query_one(LogPanel).lines_written)
        assert "attention slicing: off (auto" in log_text and "saved: seed 7" in log_text


async def start_a_long_job(pilot, app, prompt: str) -> StatusPanel:
    """Generate ``prompt`` once the model is loaded; the status panel, once the first step is shown."""
    await wait_loaded(pilot, app)
    await type_prompt(pilot, prompt)
    await pilot.press("enter")
    status = app.main_screen.query_one(StatusPanel)
    await wait_for(pilot, lambda: len(status.step_times) >= 1, what="the first step")
    return status


async def test_escape_cancels_the_running_job_within_a_step(sdtui_home):
    app = make_app(engine=scripted(step_s=0.05), steps=400)  # 20 s: only the cancel can end it
    async with app.run_test(size=SIZE) as pilot:
        status = await start_a_long_job(pilot, app, "long job")
        await pilot.press("escape")
        await wait_for(pilot, lambda: status.state == "cancelled", timeout=20, what="the cancel")
        assert len(status.step_times) < 400
        assert [r[2] for r in rows(sdtui_home)] == ["cancelled"]
        # The app stays usable: the next job runs.
        app.main_screen.query_one(SettingsPanel).set_value("steps", 2)
        await pilot.press("enter")
        await wait_for(pilot, lambda: status.state == "done", what="the next job")


async def test_a_queue_of_three_snapshots_each_jobs_settings(sdtui_home):
    app = make_app(engine=scripted(step_s=0.01), steps=6)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot, app)
        panel = app.main_screen.query_one(SettingsPanel)
        status = app.main_screen.query_one(StatusPanel)
        for steps, prompt in ((6, "first"), (3, "second"), (2, "third")):
            panel.set_value("steps", steps)
            await type_prompt(pilot, prompt)
            await pilot.press("enter")
        await wait_for(pilot, lambda: status.queue >= 1 or len(rows(sdtui_home)) >= 2, what="a waiting job")
        await wait_for(pilot, lambda: len(rows(sdtui_home)) == 3 and not app.session.busy, what="three images")
        assert [(r[0], r[4], r[2]) for r in rows(sdtui_home)] == [("first", 6, "done"), ("second", 3, "done"),
                                                                 ("third", 2, "done")]
        assert status.queue == 0


async def test_clear_queue_drops_waiting_jobs(sdtui_home):
    app = make_app(engine=scripted(step_s=0.05), steps=500)  # 25 s: only the cancel can end it
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot, app)
        await type_prompt(pilot, "running")
        for _ in range(3):
            await pilot.press("enter")
        await wait_for(pilot, lambda: app.session.busy and app.session.waiting == 2, what="two waiting")
        await pilot.press("f9")
        assert app.session.waiting == 0
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.session.busy, what="the cancel")
        assert [r[2] for r in rows(sdtui_home)] == ["cancelled"]


async def test_reroll_uses_a_new_seed_each_time_and_seed_keys_work(sdtui_home):
    app = make_app(engine=scripted(), steps=2)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot, app)
        await type_prompt(pilot, "fox")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(rows(sdtui_home)) == 1 and not app.session.busy)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(rows(sdtui_home)) == 2 and not app.session.busy)
        seeds = [r[1] for r in rows(sdtui_home)]
        assert seeds[0] != seeds[1] and 7 not in seeds
        await pilot.press("ctrl+l")  # unlock: seed 7 was locked
        assert app.session.settings.seed == "random"
        await pilot.press("ctrl+g")  # reuse the last image's seed
        assert app.session.settings.seed == seeds[1]
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(rows(sdtui_home)) == 3 and not app.session.busy)
        assert rows(sdtui_home)[-1][1] == seeds[1]


async def test_step_and_guidance_keys(sdtui_home):
    app = make_app(engine=scripted(), steps=4)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f6", "f6", "f5", "f8", "f8", "f8", "f7")
        assert app.session.settings.steps == 5 and app.session.settings.guidance == 8.0
        assert app.main_screen.query_one("#setting-steps").value == "5"


async def test_invalid_settings_are_shown_inline_and_never_reach_the_engine(sdtui_home):
    app = make_app(engine=scripted())
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot, app)
        steps = app.main_screen.query_one("#setting-steps")
        steps.focus()
        steps.value = ""
        await pilot.press(*"abc")
        problem = app.main_screen.query_one("#problem-steps")
        await wait_for(pilot, lambda: problem.has_class("shown"))
        assert "steps: 'abc' is not a whole number; use 1 to 500" in str(problem.render())
        width = app.main_screen.query_one("#setting-width")
        width.value = "513"
        await pilot.pause()
        assert "multiple of 8" in str(app.main_screen.query_one("#problem-width").render())
        await type_prompt(pilot, "a fox")
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert rows(sdtui_home) == [] and app.session.waiting == 0 and not app.session.busy
        assert any("Fix steps first" in n.message for n in app._notifications)
        steps.value = "3"
        width.value = "128"
        await pilot.pause()
        assert app.main_screen.query_one(SettingsPanel).valid
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(rows(sdtui_home)) == 1, what="the corrected job")


async def test_settings_persist_between_runs(sdtui_home):
    app = make_app(engine=scripted())
    async with app.run_test(size=SIZE) as pilot:
        app.main_screen.query_one(SettingsPanel).set_value("steps", 33)
        app.main_screen.query_one(SettingsPanel).set_value("scheduler", "Euler a")
        await pilot.pause()
    saved = load_settings(sdtui_home / "config.toml")
    assert saved.steps == 33 and saved.scheduler == "Euler a"


async def test_a_model_that_cannot_load_leaves_the_app_usable(sdtui_home):
    app = make_app(engine=scripted(), model=str(sdtui_home / "no-such-model"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "no model loaded" in app.sub_title, what="the load failure")
        said = next(n.message for n in app._notifications if "neither an existing folder nor a Hub id" in n.message)
        assert said.count("Ctrl+P") == 1, f"the advice is given once: {said}"
        log_text = "\n".join(app.main_screen.query_one(LogPanel).lines_written)
        assert "error: model:" in log_text
        await type_prompt(pilot, "still here")
        await pilot.press("enter")
        await wait_for(pilot, lambda: not app.session.busy and app.session.waiting == 0)
        app.palette.use_model("demo")
        await wait_loaded(pilot, app)
        assert "demo model" in app.sub_title
        await pilot.press("enter")
        await wait_for(pilot, lambda: any(r[2] == "done" for r in rows(sdtui_home)), what="an image")


async def test_prompts_are_recalled_newest_first_including_earlier_runs(sdtui_home):
    first = make_app(engine=scripted(), steps=1)
    async with first.run_test(size=SIZE) as pilot:
        await generate_each(pilot, first, ("old one", "old two"))
        assert len(rows(sdtui_home)) == 2
    app = make_app(engine=scripted(), steps=1)
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.main_screen.query_one("#prompt")
        await type_prompt(pilot, "draft")
        await pilot.press("up")
        assert prompt.value == "old two"
        await pilot.press("up")
        assert prompt.value == "old one"
        await pilot.press("down", "down")
        assert prompt.value == "draft"


async def test_markup_and_escapes_in_a_prompt_are_shown_literally(sdtui_home):
    app = make_app(engine=scripted(), steps=1)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot, app)
        nasty = "[bold red]loud[/] \x1b[31mred\x1b]52;c;aGk=\x07"
        app.main_screen.query_one("#prompt").value = nasty
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.session.last_path is not None)
        caption = str(app.main_screen.query_one("#caption").render())
        assert "[bold red]loud[/]" in caption and "\\x1b[31mred" in caption and "\x1b" not in caption
        assert rows(sdtui_home)[0][0] == nasty  # stored literally


async def test_help_is_generated_from_the_bindings(sdtui_home):
    app = make_app(engine=scripted())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        from tui.client.screens.help import HelpScreen

        assert isinstance(app.screen, HelpScreen)
        descriptions = {row[2] for row in app.screen.rows}
        from tui.client.screens.compare import CompareScreen
        from tui.client.screens.history import HistoryScreen
        from tui.client.screens.viewer import ViewerScreen

        for screen in (app.main_screen, HistoryScreen, CompareScreen, ViewerScreen):
            for binding in screen.BINDINGS:
                assert binding.description in descriptions, binding
        assert "Earlier prompt" in descriptions and "Quit" in descriptions
        where = {row[2]: row[0] for row in app.screen.rows}
        assert where["Re-run"] == "history, viewer" and where["Zoom in"] == "viewer"
        keys = {row[2]: row[1] for row in app.screen.rows}
        assert keys["Zoom in"] == "+, =" and keys["Compare"] == "="
        assert keys["Image-to-image strength -0.05"] == "["  # not Textual's name for the key
        await pilot.press("escape")
        assert app.screen is app.main_screen


async def test_command_palette_commands_run(sdtui_home):
    app = make_app(engine=scripted(), steps=1)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot, app)
        await type_prompt(pilot, "fox")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.session.last_path is not None)
        from tui.client.commands import SdtuiCommands

        names = [name for name, _, _ in SdtuiCommands(app.screen)._commands()]
        assert all(": " in name for name in names)
        app.palette.copy_path()
        assert app.clipboard == app.session.last_path
        app.palette.toggle_previews()
        await pilot.pause()
        assert app.settings.previews is False and app.session.engine_options()["previews"] is False
        engine = app.session.hosted.server.engine
        assert engine.options.previews is True, "settings reach the engine only with the job that uses them"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.history.count() == 2 and not app.session.busy, what="the second job")
        assert engine.options.previews is False
        app.palette.toggle_slicing()
        await pilot.pause()
        assert app.settings.attention_slicing == "on"
        app.palette.clear_log()
        assert app.main_screen.query_one(LogPanel).lines_written == []


async def test_quit_while_generating_exits_quickly_and_keeps_history(sdtui_home):
    app = make_app(engine=scripted(step_s=0.05), steps=400)  # 20 s: only the quit can end it
    async with app.run_test(size=SIZE) as pilot:
        await start_a_long_job(pilot, app, "interrupted")
        started = time.monotonic()
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: not app.session.busy, timeout=5)
        assert time.monotonic() - started < 2
    assert [r[2] for r in rows(sdtui_home)] == ["cancelled"]
