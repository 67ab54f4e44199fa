"""Snapshots of the main screen, idle and after a finished generation.

Deterministic set-up: an isolated SDTUI_HOME, the demo model with a fixed seed (CPU
results are bit-identical), the log cleared after loading (its lines carry clock
times), and the status figures that depend on machine speed set to fixed values
through the panel's own step() method.
"""

from textual.widgets import Input

from tests.app_helpers import make_app, type_prompt, wait_for, wait_loaded
from tui.engine.memory import MemorySample
from tui.client.widgets.log import LogPanel
from tui.client.widgets.status import StatusPanel

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
        app.main_screen.query_one(StatusPanel).show_memory(FIXED_MEMORY)
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


def test_history_screen(snap_compare, monkeypatch):
    """A hand-made history with fixed times and figures, images made by the engine with fixed seeds,
    under a fixed SDTUI_HOME so the paths shown are the same on every run."""
    import shutil
    from pathlib import Path

    from tui.engine import Engine, EngineOptions, GenerationRequest
    from tui.locations import locations
    from tui.store.history import History, HistoryEntry

    home = Path("/tmp/sdtui-snapshot-home")
    shutil.rmtree(home, ignore_errors=True)
    monkeypatch.setenv("SDTUI_HOME", str(home))
    places = locations()
    history = History(places.history_db, places.outputs_dir)
    engine = Engine(EngineOptions(model="demo"))
    for minute, (prompt, seed, steps) in enumerate((("a lighthouse at dusk", 1, 3), ("a red fox in the snow", 2, 4),
                                                    ("[bold]not markup[/bold]", 3, 2))):
        request = GenerationRequest(prompt, seed=seed, steps=steps, width=128, height=128)
        finished = engine.generate(request)[0]
        entry = HistoryEntry.for_request(request, "done", model="demo model (random weights)", device="cpu",
                                         dtype="float32", total_s=1.25, it_per_s=3.5, first_step_s=0.5,
                                         peak_memory=600 * 1024**2, created_at=f"2026-11-26T10:0{minute}:00.000+00:00")
        history.save_image(finished.image, request, seed, 0, entry, output=places.outputs_dir / f"image-{seed}.png")
    history.add(HistoryEntry.for_request(GenerationRequest("a cancelled one", seed=4), "cancelled",
                                         error="cancelled", created_at="2026-11-26T10:05:00.000+00:00"))
    history.close()
    app = make_app()

    async def open_history(pilot):
        await wait_loaded(pilot, app)
        app.main_screen.query_one(LogPanel).clear_lines()
        await pilot.press("f2")
        await pilot.pause(0.4)
        await pilot.press("down")
        await pilot.pause(0.4)
        for field in app.screen.query(Input):
            field.cursor_blink = False
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 36), run_before=open_history)
