"""Bad input in the app: settings fields, prompt content, model paths, an outputs folder
that cannot be made, a damaged history and a full disk. Each case ends in one sentence
naming the field; the app keeps running (the last step of each test makes an image), and
nothing made before is lost."""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import pytest

from tests.app_helpers import make_recording_app, plain, type_prompt, wait_for, wait_loaded
from tests.scripted_engine import scripted
from tests.reliability import MODEL_PATHS, assert_nothing_lost, digest, history_rows
from tui.store.images import SDTUI_KEY, png_text
from tui.text import _BIDI_CONTROLS
from tui.client.widgets.log import LogPanel
from tui.client.widgets.settings import SettingsPanel

pytestmark = pytest.mark.asyncio
SIZE = (120, 40)
SMALL = dict(steps=2, width=64, height=64)
# The scripted engine serves where the subject is the app's fields, prompts, folders and history; bad
# model paths stay on the real engine, whose loaders say what is wrong with each.


def messages(app) -> list[str]:
    """Every notification so far, including those whose toast has already timed out."""
    return app.notified


def shown_raw(text: str) -> list[str]:
    """Characters that would reach the terminal as control codes (a tab is expanded to spaces)."""
    return [ch for ch in text if (unicodedata.category(ch) == "Cc" and ch != "\t") or ch in _BIDI_CONTROLS]


async def make_one_image(pilot, app, prompt: str = "still working") -> None:
    before = app.history.count_matching(status="done")
    await type_prompt(pilot, prompt)
    await pilot.press("enter")
    await wait_for(pilot, lambda: app.history.count_matching(status="done") > before, what="an image")


# --- settings fields ------------------------------------------------------------------------

SETTINGS = [
    ("steps", "many", "steps: 'many' is not a whole number; use 1 to 500"),
    ("steps", "0", "steps: 0 is outside 1..500"),
    ("steps", "1.5", "steps"),
    ("steps", "501", "steps: 501 is outside 1..500"),
    ("guidance", "nan", "guidance"),
    ("guidance", "-1", "guidance"),
    ("guidance", "51", "guidance"),
    ("width", "513", "width: 513 is not allowed; use a multiple of 8"),
    ("width", "0", "width"),
    ("height", "4096", "height"),
    ("height", "", "height"),
    ("seed", "-3", "seed"),
    ("seed", "18446744073709551616", "seed"),
    ("seed", "lucky", "seed"),
    ("count", "0", "count"),
    ("count", "101", "count"),
    ("model", "  ", "model"),
]


async def test_each_bad_settings_field_is_one_line_and_no_job_starts(sdtui_home, made_before):
    app = make_recording_app(engine=scripted(), **SMALL)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot, app)
        panel = app.main_screen.query_one(SettingsPanel)
        for key, value, words in SETTINGS:
            field = app.main_screen.query_one(f"#setting-{key}")
            good = field.value
            field.value = value
            if key == "model":
                field.focus()
                await pilot.press("enter")
            await pilot.pause()
            problem = str(app.main_screen.query_one(f"#problem-{key}").render())
            assert words in problem and "\n" not in problem.strip(), (key, value, problem)
            assert not panel.valid
            prompt = app.main_screen.query_one("#prompt")
            prompt.value = "must not start"
            prompt.focus()
            await pilot.press("enter")
            await pilot.pause()
            assert app.session.waiting == 0 and not app.session.busy, (key, value)
            assert f"Fix {key} first: {words}" in messages(app)[-1] or key == "model"
            field.value = good
            if key == "model":
                panel.set_value("model", good)
            await pilot.pause()
            assert panel.valid, (key, panel.problems)
        assert app.session.hosted.server.engine.loaded, "a bad field never unloads the model"
        await make_one_image(pilot, app)
    assert_nothing_lost(sdtui_home, made_before)
    assert [r[1] for r in history_rows(sdtui_home)] == ["made before", "still working"]


# --- prompt content -------------------------------------------------------------------------

REFUSED = [
    ("empty", "", "prompt: must not be empty or blank"),
    ("blank", " \t  ", "prompt: must not be empty or blank"),
    ("100,000 characters", "fox " * 25_000, "prompt: 100,000 characters is too long; the limit is 20,000"),
    ("NUL", "a fox\x00 in snow", "prompt: contains a NUL character (at position 6); remove it"),
]
KEPT = [
    ("control characters", "bell\x07 backspace\x08 tab\t delete\x7f c1\x9b end"),
    ("Rich markup", "[bold red]loud[/] [link=http://evil.example]x[/link] [@click=app.quit]quit[/]"),
    ("colour escape", "\x1b[31mred\x1b[0m fox"),
    ("OSC 52 clipboard", "\x1b]52;c;c2R0dWk=\x07 fox"),
    ("OSC 8 link", "\x1b]8;;http://evil.example/\x1b\\click me\x1b]8;;\x1b\\"),
    ("cursor movement", "\x1b[2J\x1b[H\x1b[10A\x1b[6n fox"),
    ("right-to-left", "שלום עולם مرحبا \u202egnp.exe"),
    ("emoji", "🦊🔥 fox 👨‍👩‍👧 🏳️‍🌈"),
]


async def test_prompt_content_is_refused_in_one_line_or_kept_exactly_and_shown_inert(sdtui_home, made_before):
    app = make_recording_app(engine=scripted(), **SMALL, seed=3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot, app)
        prompt = app.main_screen.query_one("#prompt")
        for label, text, words in REFUSED:
            prompt.value = text
            prompt.focus()
            await pilot.press("enter")
            await pilot.pause()
            assert messages(app)[-1].startswith(words), label
            assert app.session.waiting == 0 and not app.session.busy, label
            assert prompt.value == text, "a refused prompt stays in the box to be fixed"
        outputs = app.history.outputs_dir.resolve()
        for label, text in KEPT:
            before = app.history.count()
            prompt.value = text
            prompt.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.history.count() > before and not app.session.busy, what=label)
            entry = app.history.recent(1)[0]
            assert (entry.status, entry.prompt) == ("done", text), label
            path = Path(entry.image_path)
            assert path.resolve().parent.parent == outputs and path.name.isascii(), (label, path)
            assert json.loads(png_text(path)[SDTUI_KEY])["request"]["prompt"] == text, label
            caption = str(app.main_screen.query_one("#caption").render())
            assert shown_raw(caption) == [] and caption.strip(), (label, caption)
            log_text = "\n".join(app.main_screen.query_one(LogPanel).lines_written)
            assert shown_raw(log_text.replace("\n", "")) == [], label
        await pilot.press("f2")  # the history screen: the table and each entry's parameters
        await wait_for(pilot, lambda: app.screen.query("#param-text"), what="the history screen")
        table = app.screen.query_one("#table")
        shown = 0
        for row in range(len(KEPT)):
            await pilot.pause(0.05)
            cells = " ".join(getattr(c, "plain", str(c)) for c in table.get_row_at(row))
            params = plain(app.screen.query_one("#param-text"))
            assert shown_raw(cells) == [] and shown_raw(params.replace("\n", "")) == [], (row, cells, params)
            shown += "prompt" in params
            await pilot.press("down")
        assert shown == len(KEPT)
        await pilot.press("escape")
        assert "[bold red]loud[/]" in "\n".join(r[1] for r in history_rows(sdtui_home))
        await make_one_image(pilot, app)
    assert_nothing_lost(sdtui_home, made_before)


# --- model paths ----------------------------------------------------------------------------

async def test_each_bad_model_path_is_one_line_and_the_app_goes_on(sdtui_home, made_before, tmp_path,
                                                                   tiny_pipeline_dir):
    app = make_recording_app(**SMALL)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot, app)
        for label, make, words in MODEL_PATHS:
            model = make(tmp_path, tiny_pipeline_dir)
            seen = len(messages(app))
            app.palette.use_model(str(model))
            await wait_for(pilot, lambda: len(messages(app)) > seen and not app.session.busy
                           and not app.session.loading, what=label)
            await wait_for(pilot, lambda: any(words in m for m in messages(app)[seen:]), what=f"{label}: {words}")
            failure = next(m for m in messages(app)[seen:] if words in m)
            assert failure.startswith("model: ") and "\n" not in failure and "Traceback" not in failure, failure
            app.palette.use_model("demo")
            await wait_loaded(pilot, app)
        await make_one_image(pilot, app)
    assert_nothing_lost(sdtui_home, made_before)


# --- where images go ------------------------------------------------------------------------

async def test_an_outputs_folder_that_cannot_be_made_is_one_line_per_job_and_the_app_goes_on(
        sdtui_home, made_before, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    app = make_recording_app(engine=scripted(), **SMALL, seed=21, outputs_dir=str(blocker / "outputs"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot, app)
        for prompt in ("first", "second"):
            before = app.history.count()
            await type_prompt(pilot, prompt)
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.history.count() > before and not app.session.busy, what=prompt)
            assert messages(app)[-1].startswith("saving failed: Not a directory")
        failed = app.history.recent(2)
        assert [(e.prompt, e.status, e.seed) for e in failed] == [("second", "failed", 21), ("first", "failed", 21)]
    assert_nothing_lost(sdtui_home, made_before)


@pytest.mark.parametrize("kind", ["garbage", "page overwritten"])
async def test_a_damaged_history_is_moved_aside_said_and_the_app_works(sdtui_home, made_before, tmp_path, kind):
    from tests.store.test_history import damaged_copy

    damaged, original = damaged_copy(tmp_path, kind)
    os.replace(damaged, sdtui_home / "history.db")
    app = make_recording_app(engine=scripted(), **SMALL)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot, app)
        await wait_for(pilot, lambda: any("moved to" in m for m in messages(app)), what="the notice")
        log_text = "\n".join(app.main_screen.query_one(LogPanel).lines_written)
        assert "was unreadable" in log_text and "moved to" in log_text
        await make_one_image(pilot, app)
        aside = Path(app.history.moved_aside)
    assert aside.read_bytes() == original
    # The image made before the damage is back in the new history, adopted from its own metadata.
    assert sorted(r[1] for r in history_rows(sdtui_home)) == ["made before", "still working"]
    assert all(digest(path) == sha for path, sha in made_before[1].items())
