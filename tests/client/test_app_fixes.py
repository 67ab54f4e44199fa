"""Small things found by using the app, each checked on the real app (its server in-process, on the
scripted engine: none of them is about the pipeline)."""

import re
from dataclasses import replace

import pytest

from tests.app_helpers import generate_each, make_recording_app, type_prompt, wait_for, wait_loaded
from tests.scripted_engine import scripted
from tui.engine.memory import sample_memory
from tui.engine.models import ModelLoadError, offline_message, resolve_source
from tui.client.screens.help import HelpScreen
from tui.client.widgets.log import LogPanel
from tui.client.widgets.settings import SettingsPanel
from tui.client.widgets.status import StatusPanel
from tui.client.wording import clean_pasted_path, in_app_wording

SIZE = (100, 30)


def log_lines(app) -> list[str]:
    return app.main_screen.query_one(LogPanel).lines_written


def progress_line(app) -> str:
    return app.main_screen.query_one("#progress-text").text.plain


async def start_a_long_job(pilot, app, prompt="long one"):
    await wait_loaded(pilot, app)
    await type_prompt(pilot, prompt)
    await pilot.press("enter")
    await wait_for(pilot, lambda: app.main_screen.query_one(StatusPanel).state == "generating"
                   and app.session.making is not None, what="the job to start")


@pytest.mark.asyncio
async def test_a_model_switch_behind_a_running_job_says_it_waits(sdtui_home, hub_cache):
    # The switch fails as a Hub model that is not in the cache fails with the Hub off.
    engine = scripted(step_s=0.05, load_errors={"nobody/not-here": offline_message("nobody/not-here",
                                                                                   "HF_HUB_OFFLINE is set")})
    app = make_recording_app(engine=engine, steps=400, previews=False)  # 20 s: only the cancel ends it
    async with app.run_test(size=SIZE) as pilot:
        await start_a_long_job(pilot, app)
        app.palette.use_model("nobody/not-here")
        await pilot.pause()
        assert any("loading nobody/not-here after 1 job ahead of it" in line for line in log_lines(app))
        assert "waiting: nobody/not-here loads after 1 job" in app.sub_title
        await pilot.press("escape")
        await wait_for(pilot, lambda: any("Still using demo" in message for message in app.notified),
                       what="the switch to fail after the job")


@pytest.mark.asyncio
async def test_seed_keys_during_a_job_take_the_seed_being_made(sdtui_home):
    app = make_recording_app(engine=scripted(step_s=0.05), steps=2, seed="random")  # 400 steps then take 20 s
    async with app.run_test(size=SIZE) as pilot:
        await generate_each(pilot, app, ("first",))
        last = app.session.last_seed
        app.main_screen.query_one(SettingsPanel).set_value("steps", 400)
        await start_a_long_job(pilot, app)
        making = app.session.making.seed
        assert making != last
        await pilot.press("ctrl+g")
        assert app.session.settings.seed == making
        assert any(f"Seed locked to {making} (the image being made)" in message for message in app.notified)
        await pilot.press("ctrl+l")  # unlock, then lock again: still the image being made
        await pilot.press("ctrl+l")
        assert app.session.settings.seed == making
        await pilot.press("escape")


@pytest.mark.asyncio
async def test_elapsed_and_eta_move_every_second_between_steps(sdtui_home):
    app = make_recording_app(engine=scripted())
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot, app)
        status = app.main_screen.query_one(StatusPanel)
        status.job_started(1, 10)
        status.step(1, 10, 0, 8.0, 8.0, 0.125, sample_memory("cpu"))
        first = progress_line(app)
        assert "elapsed 0:08" in first and "ETA 1:12" in first
        # No step arrives, yet the line moves: elapsed up and ETA down, second by second.
        await wait_for(pilot, lambda: "elapsed 0:10" in progress_line(app), timeout=5, what="two ticks")
        assert re.search(r"ETA 1:(09|10)", progress_line(app)), progress_line(app)


@pytest.mark.asyncio
async def test_a_refused_job_does_not_show_the_previous_jobs_figures(sdtui_home):
    app = make_recording_app(engine=scripted(), steps=3)
    async with app.run_test(size=SIZE) as pilot:
        await generate_each(pilot, app, ("made",))
        assert "3/3" in progress_line(app)
        # A job whose model cannot load (the settings changed without a load, as a hand-edited
        # config would): the server refuses it after trying.
        app.session.settings = replace(app.session.settings, model=str(sdtui_home / "no-such-model"))
        await type_prompt(pilot, "refused")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "failed" in progress_line(app), what="the refusal")
        line = progress_line(app)
        assert line.startswith("0/0") and "3/3" not in line, line
        assert any("did not run: its model" in message for message in app.notified), app.notified


@pytest.mark.asyncio
async def test_queued_lines_name_the_prompt(sdtui_home):
    app = make_recording_app(engine=scripted(), steps=2)
    async with app.run_test(size=SIZE) as pilot:
        await generate_each(pilot, app, ("a lighthouse in a storm at night, oil painting, dramatic",))
        queued = [line for line in log_lines(app) if "queued" in line]
        assert queued and '"a lighthouse in a storm at night, oil p…"' in queued[0], queued


@pytest.mark.asyncio
async def test_the_caption_cuts_the_prompt_never_the_seed(sdtui_home):
    app = make_recording_app(engine=scripted(), steps=2, seed=1934703503)
    async with app.run_test(size=(80, 24)) as pilot:
        await generate_each(pilot, app, ("a very long prompt " * 8,))
        caption = app.main_screen.query_one("#caption").text.plain
        assert "seed 1934703503" in caption and "…" in caption, caption
        assert len(caption) <= 78


@pytest.mark.asyncio
async def test_palette_keys_opens_the_help_that_escape_closes(sdtui_home):
    app = make_recording_app(engine=scripted())
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot, app)
        keys = [c for c in app.get_system_commands(app.screen) if c.title == "Keys"]
        assert len(keys) == 1
        keys[0].callback()
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert app.screen is app.main_screen


@pytest.mark.asyncio
async def test_copy_last_path_in_a_new_session_uses_the_history(sdtui_home):
    app = make_recording_app(engine=scripted(), steps=2)
    async with app.run_test(size=SIZE) as pilot:
        await generate_each(pilot, app, ("from before",))
        path = app.history.recent(1)[0].image_path
    app = make_recording_app(engine=scripted(), steps=2)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot, app)
        app.palette.copy_path()
        assert app.clipboard == path


@pytest.mark.asyncio
async def test_ctrl_t_returns_to_the_prompt_from_anywhere(sdtui_home):
    app = make_recording_app(engine=scripted(), steps=2)
    async with app.run_test(size=SIZE) as pilot:
        await generate_each(pilot, app, ("somewhere",))
        await pilot.press("f2")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "HistoryScreen", what="history")
        await pilot.press("o")
        stack = ["MainScreen", "HistoryScreen", "ViewerScreen"]
        await wait_for(pilot, lambda: [type(s).__name__ for s in app.screen_stack] == stack,
                       what="history and the viewer")
        await pilot.press("ctrl+t")
        assert app.screen is app.main_screen and app.focused is app.main_screen.query_one("#prompt")
        await app.main_screen.action_toggle_settings()
        app.main_screen.query_one("#setting-steps").focus()
        await pilot.press("ctrl+t")
        assert app.focused is app.main_screen.query_one("#prompt")


KEY_CHARACTERS = {"ctrl+u": "\x15", "backspace": "\x7f", "enter": "\r", "left": None}


def keys_at_once(app, keys) -> None:
    """Keys as a terminal delivers a burst of them (a slow SSH link, tmux's send-keys): all
    posted before the app handles the first, as the input thread does."""
    from textual import events

    for key in keys:
        app.post_message(events.Key(key, KEY_CHARACTERS.get(key, key)))


@pytest.mark.asyncio
async def test_a_burst_of_keys_edits_and_submits_the_prompt_in_order(sdtui_home):
    app = make_recording_app(engine=scripted(), steps=2)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot, app)
        prompt = app.main_screen.query_one("#prompt")
        prompt.value = "an earlier prompt"
        prompt.cursor_position = len(prompt.value)
        keys_at_once(app, ["ctrl+u", *"a red fix", "backspace", "backspace", *"ox", "enter", *" at dusk"])
        await wait_for(pilot, lambda: prompt.value.endswith("dusk") and app.history.count() == 1
                       and not app.session.busy, what="the keys and the job")
        assert prompt.value == "a red fox at dusk"
        assert [e.prompt for e in app.history.query()] == ["a red fox"]


@pytest.mark.asyncio
async def test_every_field_applies_its_editing_keys_in_order(sdtui_home):
    app = make_recording_app(engine=scripted(), steps=2)
    async with app.run_test(size=SIZE) as pilot:
        await app.main_screen.action_toggle_settings()
        field = app.main_screen.query_one("#setting-steps")
        field.focus()
        field.value = "20"
        field.cursor_position = 2
        await pilot.pause()
        keys_at_once(app, ["backspace", "backspace", "3", "5", "left", "2"])
        try:
            await wait_for(pilot, lambda: field.value == "325", timeout=5)
        except AssertionError:
            raise AssertionError(f"the keys applied out of order: {field.value!r}") from None


def test_pasted_paths_lose_their_quotes_and_escapes(tmp_path):
    target = tmp_path / "my image.png"
    for pasted in (f"'{target}'", f'"{target}"', str(target).replace(" ", "\\ "), f"  {target}  ",
                   f"file://{str(target).replace(' ', '%20')}"):
        assert clean_pasted_path(pasted) == str(target), pasted
    assert clean_pasted_path("owner/model") == "owner/model"
    assert clean_pasted_path("it's") == "it's"  # an unbalanced quote stays


@pytest.mark.asyncio
async def test_importing_a_quoted_png_path(sdtui_home, tmp_path):
    app = make_recording_app(engine=scripted(), steps=2)
    async with app.run_test(size=SIZE) as pilot:
        await generate_each(pilot, app, ("quoted import",))
        source = tmp_path / "dropped here.png"
        source.write_bytes(open(app.history.recent(1)[0].image_path, "rb").read())
        app.palette.import_png()
        await pilot.pause()
        app.screen.query_one("#answer").value = f"'{source}'"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is app.main_screen)
        assert any("Loaded sdtui parameters from dropped here.png" in message for message in app.notified)


@pytest.mark.asyncio
async def test_importing_a_two_pass_comfyui_image_keeps_the_scheduler_and_logs_the_notes(sdtui_home):
    from tests.store.test_foreign_images import FOREIGN
    from tui.client.widgets.settings import SettingsPanel

    app = make_recording_app(engine=scripted(), steps=2)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.main_screen.query_one(SettingsPanel)
        panel.set_value("scheduler", "LMS")
        app.palette.import_png()
        await pilot.pause()
        app.screen.query_one("#answer").value = str(FOREIGN / "ComfyUI" / "unclip_2pass_cropped.png")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is app.main_screen)
        await pilot.pause()
        assert app.main_screen.query_one("#prompt").value == "beautiful scenery landscape outdoors mountains"
        assert app.session.settings.scheduler == "LMS" and app.session.settings.seed == 119080905858220
        lines = log_lines(app)
        assert any(line.endswith("imported ComfyUI parameters from unclip_2pass_cropped.png") for line in lines)
        assert any("dpmpp_sde" in line and "current scheduler is kept" in line for line in lines)
        assert any("2 notes in the log" in message for message in app.notified)


def test_engine_advice_for_the_command_line_is_reworded_in_the_app():
    messages = []
    for model in ("", "not a model at all!", "nobody/not-here"):
        try:
            resolve_source(model)
        except ModelLoadError as error:
            messages.append(str(error))
    from tui.engine.models import offline_message

    messages.append(offline_message("nobody/not-here", "HF_HUB_OFFLINE is set"))
    assert len(messages) == 3 and all("--demo" in m for m in messages)
    for message in messages:
        reworded = in_app_wording(message)
        assert "--demo" not in reworded and "--model" not in reworded, reworded
        assert "model: use the demo model" in reworded


@pytest.mark.asyncio
async def test_dialogs_show_their_own_keys(sdtui_home):
    from textual.widgets import Footer

    app = make_recording_app(engine=scripted(), steps=2)
    async with app.run_test(size=SIZE) as pilot:
        await generate_each(pilot, app, ("dialogs",))

        def shown() -> set[str]:
            return {b.binding.description for b in app.active_bindings.values() if b.binding.show}

        for opener, expected in ((lambda: pilot.press("f1"), "Close help"),
                                 (lambda: pilot.press("f3"), "Close"),
                                 (app.palette.import_png, "Cancel")):
            result = opener()
            if result is not None:
                await result
            await pilot.pause(0.3)
            assert app.screen is not app.main_screen and app.screen.query_one(Footer)
            assert expected in shown() and "Settings" not in shown() and "View" not in shown(), shown()
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is app.main_screen)


@pytest.mark.asyncio
async def test_the_last_image_is_on_the_stage_at_start(sdtui_home):
    app = make_recording_app(engine=scripted(), steps=2)
    async with app.run_test(size=SIZE) as pilot:
        await generate_each(pilot, app, ("left from before",))
    app = make_recording_app(engine=scripted(), steps=2)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot, app)
        await pilot.pause(0.2)
        assert app.main_screen.query_one("#preview").image is not None
        caption = app.main_screen.query_one("#caption").text.plain
        assert "left from before" in caption and "seed 7" in caption
        await pilot.press("ctrl+g")
        assert app.session.settings.seed == 7
