"""The app as a client of ``sdtui serve``: a server killed under it, another client's job, and
coming back to a job that runs."""

import asyncio
import os
import signal

import pytest

from tests.app_helpers import make_recording_app, type_prompt, wait_for, wait_loaded
from tests.conftest import sdtui_command
from tests.reliability import assert_history_consistent, history_rows, start_generating
from tui.client.screens.confirm import ConfirmScreen
from tui.client.connection import server_pid
from tui.client.widgets.log import LogPanel
from tui.client.widgets.settings import SettingsPanel
from tui.client.widgets.status import StatusPanel

pytestmark = pytest.mark.asyncio
SIZE = (120, 40)


def log_text(app) -> str:
    return "\n".join(app.main_screen.query_one(LogPanel).lines_written)


async def test_a_killed_server_leaves_the_app_up_and_another_starts(sdtui_home):
    app = make_recording_app(inline=False, steps=400, width=256, height=256)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot, app)
        first = server_pid(app.places.data_dir)
        assert first is not None and first != os.getpid(), "the app started a server process"
        await type_prompt(pilot, "killed midway")
        await pilot.press("enter")
        status = app.main_screen.query_one(StatusPanel)
        await wait_for(pilot, lambda: len(status.step_times) >= 2, what="the job to run")
        os.kill(first, signal.SIGKILL)  # as the out-of-memory killer would
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the offer to restart")
        said = log_text(app)
        assert "The sdtui server went away" in said and "Images already saved are in the history" in said
        assert status.state == "failed" and app.sub_title == "no sdtui server"
        await pilot.press("y")
        await wait_for(pilot, lambda: app.session.connected and app.session.model is not None, timeout=90,
                       what="a new server with the model")
        assert server_pid(app.places.data_dir) not in (None, first)
        app.main_screen.query_one(SettingsPanel).set_value("steps", 2)
        await type_prompt(pilot, "after the restart")
        await pilot.press("enter")
        await wait_for(pilot, lambda: status.state == "done", what="a job on the new server")
    assert_history_consistent(sdtui_home)
    # The killed job left no row (a row is written when a job ends); the later one is there.
    assert [(prompt, status) for _, prompt, _, status, _ in history_rows(sdtui_home)] == \
        [("after the restart", "done")]


async def test_sdtui_generate_while_the_app_runs_uses_the_loaded_model(sdtui_home):
    app = make_recording_app(inline=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot, app)
        process = await asyncio.create_subprocess_exec(
            *sdtui_command(), "generate", "from the command line", "--demo", "--steps", "2", "--width", "128",
            "--height", "128", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, err.decode()
        assert "using the server's loaded model, demo model (random weights)" in err.decode()
        path = out.decode().strip()
        # The app sees the other client's job too, and shows its image.
        await wait_for(pilot, lambda: app.session.last_path == path, what="the command's image in the app")
    server_log = app.places.log_file.read_text()  # the app's own lines are not in it: tests set no file
    assert server_log.count("loading demo model") == 1, "the model loaded once, for both clients"


async def test_another_clients_job_is_announced_and_previewed_in_the_app(sdtui_home):
    app = make_recording_app(inline=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot, app)
        preview = app.main_screen.query_one("#preview")
        process = await asyncio.create_subprocess_exec(
            *sdtui_command(), "generate", "watched from the app", "--demo", "--steps", "60", "--width", "128",
            "--height", "128", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        sizes = set()
        finished = asyncio.ensure_future(process.communicate())
        while not finished.done():
            if preview.image is not None:
                sizes.add(preview.image.size)
            await pilot.pause(0.02)
        out, err = finished.result()
        assert process.returncode == 0, err.decode()
        assert "queued (by generate): \"watched from the app\"" in log_text(app)
        assert (16, 16) in sizes, f"a live preview (latent size) of the other client's job: {sizes}"
        await wait_for(pilot, lambda: app.session.last_path == out.decode().strip(), what="its image")


async def test_a_new_app_shows_the_running_job_where_it_is_and_can_cancel_it(sdtui_home):
    process, _ = start_generating("running before the app", 400, 256)  # its server runs the job
    try:
        app = make_recording_app(inline=False)
        async with app.run_test(size=SIZE) as pilot:
            status = app.main_screen.query_one(StatusPanel)
            await wait_for(pilot, lambda: status.state == "generating" and status.step_times, what="the job's progress")
            caption = str(app.main_screen.query_one("#caption").render())
            assert "generating: running before the app" in caption
            assert "the sdtui server is running job 1" in log_text(app)
            # Attached to a busy server: its model in the header at once, not "starting…" until the queue empties.
            assert "connected to the sdtui server" in log_text(app)
            assert app.sub_title.startswith("demo model (random weights) · cpu"), app.sub_title
            await pilot.press("escape")  # a cancel names the job, whichever client queued it
            await wait_for(pilot, lambda: status.state == "cancelled", what="the cancel")
        assert process.wait(timeout=30) == 1
    finally:
        if process.poll() is None:
            process.kill()
    assert_history_consistent(sdtui_home)
    assert [status for _, _, _, status, _ in history_rows(sdtui_home)] == ["cancelled"]
