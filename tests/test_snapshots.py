"""Snapshots of the main screen, idle and after a finished generation.

Deterministic set-up: an isolated SDTUI_HOME, the demo model with a fixed seed (CPU
results are bit-identical), the log cleared after loading (its lines carry clock
times), and the status figures that depend on machine speed set to fixed values
through the panel's own step() method.
"""

import pytest

from tests.app_helpers import make_app, type_prompt, wait_for, wait_loaded
from textual.widgets import Input

from tui.engine.memory import MemorySample
from tui.widgets.log import LogPanel
from tui.widgets.status import StatusPanel

GB = 1024**3


def steady_cursor(app) -> None:
    for field in app.main_screen.query(Input):
        field.cursor_blink = False
FIXED_MEMORY = MemorySample(device_allocated=None, device_reserved=None, device_limit=None, process_rss=GB // 2,
                            system_used=6 * GB, system_total=16 * GB, swap_used=0)


def test_main_screen_idle(snap_compare, sdtui_home):
    app = make_app()

    async def ready(pilot):
        await wait_loaded(pilot, app)
        app.main_screen.query_one(LogPanel).clear_lines()
        steady_cursor(app)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=ready)


def test_main_screen_after_a_generation(snap_compare, sdtui_home):
    app = make_app(steps=4, width=256, height=256)

    async def generate(pilot):
        await wait_loaded(pilot, app)
        await type_prompt(pilot, "a red fox in the snow")
        await pilot.press("enter")
        status = app.main_screen.query_one(StatusPanel)
        await wait_for(pilot, lambda: status.state == "done", what="the image")
        app.main_screen.query_one(LogPanel).clear_lines()
        status.job_started(1, 4)
        status.step(4, 4, 0, 0.25, 1.0, 4.0, FIXED_MEMORY)
        status.job_ended("done")
        steady_cursor(app)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=generate)
