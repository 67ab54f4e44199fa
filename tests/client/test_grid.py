"""X/Y grids: axes as A1111's X/Y plot names them, one job per cell in row order, the contact sheet
with its labels and cells where they belong, from the CLI and from the app."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_sdtui
from tui.engine.request import GenerationRequest
from tui.client.grid import GRID_KEY, Axis, GridError, compose, grid_requests, parse_axes, parse_axis


@pytest.mark.parametrize("text,axis", [
    ("steps=10,20,30", Axis("steps", ("10", "20", "30"))),
    ("CFG Scale = 5, 7.5", Axis("guidance", ("5", "7.5"))),
    ('sampler="Euler a","DPM++ 2M Karras"', Axis("scheduler", ("Euler a", "DPM++ 2M Karras"))),
    ("Prompt S/R=red,blue", Axis("sr", ("red", "blue"))),
    ("seed=1", Axis("seed", ("1",))),
])
def test_axes_are_read_as_a1111_names_them(text, axis):
    assert parse_axis(text) == axis


@pytest.mark.parametrize("texts,message", [
    (["size=2"], "grid: 'size=2' is not an axis; write NAME=V1,V2"),
    (["sr=red"], "grid: sr needs a word to find and what replaces it; write sr=red,blue"),
    (["steps=1,2", "steps=3"], "grid: both axes vary steps"),
    (["seed=1", "steps=2", "guidance=3"], "grid: 3 axes; give one or two"),
    ([f"seed={','.join(map(str, range(11)))}", f"steps={','.join(map(str, range(1, 11)))}"],
     "grid: 110 cells is too many; the limit is 100"),
])
def test_axes_that_cannot_make_a_grid_are_one_sentence(texts, message):
    with pytest.raises(GridError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_axes(texts)


def test_cells_go_row_by_row_and_differ_only_by_their_axes():
    base = GenerationRequest("a red fox", negative_prompt="red blur", steps=20, count=3)
    cells = grid_requests(base, parse_axes(["sr=red,blue", "steps=10,30"]))
    assert [(c.prompt, c.negative_prompt, c.steps) for c in cells] == [
        ("a red fox", "red blur", 10), ("a blue fox", "blue blur", 10),
        ("a red fox", "red blur", 30), ("a blue fox", "blue blur", 30)]
    assert len({c.seed for c in cells}) == 1 and cells[0].seed is not None and {c.count for c in cells} == {1}
    with pytest.raises(GridError, match="grid: scheduler value 'Warp'"):
        grid_requests(base, parse_axes(["scheduler=Euler,Warp"]))
    with pytest.raises(GridError, match="grid: sr looks for 'cat', which is not in the prompt"):
        grid_requests(base, parse_axes(["sr=cat,dog"]))


def test_the_sheet_puts_each_cell_in_its_place_under_its_labels():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), None]
    images = [Image.new("RGB", (64, 48), c) if c else None for c in colours]
    axes = parse_axes(["steps=10,20", "guidance=5,7"])
    sheet = compose(images, axes)
    pixels = np.asarray(sheet)
    left, top = sheet.width - 2 * 64, sheet.height - 2 * 48
    assert left > 0 and top > 0
    for number, colour in enumerate(colours):
        row, column = divmod(number, 2)
        cell = pixels[top + row * 48 + 24, left + column * 64 + 32]
        assert tuple(cell) == (colour or (128, 128, 128))  # a cell that made no image is grey
    assert (pixels[:top, left:] < 100).any() and (pixels[top:, :left] < 100).any()  # the labels are drawn
    one_axis = compose(images[:2], parse_axes(["seed=1,2"]))
    assert one_axis.width == 128 and one_axis.height > 48


def test_the_cli_makes_a_2x2_grid_and_its_sheet(sdtui_home, tmp_path):
    result = run_sdtui(["generate", "a red fox", "--demo", "--width", "64", "--height", "64", "--seed", "9",
                        "--grid", "steps=2,3", "--grid", "sr=red,blue"])
    assert result.returncode == 0, result.stderr
    *cells, sheet_path = result.stdout.split()
    assert len(cells) == 4 and "queued 4 jobs, one for each cell of the grid" in result.stderr
    sheet = Image.open(sheet_path)
    assert sheet.width > 128 and sheet.height > 128 and sheet_path.split("/")[-1].startswith("grid-")
    data = json.loads(sheet.text[GRID_KEY])
    assert data == {"axes": ["steps=2,3", "sr=red,blue"], "cells": cells}
    prompts = [Image.open(p).text["parameters"].splitlines()[0] for p in cells]
    assert prompts == ["a red fox", "a red fox", "a blue fox", "a blue fox"]
    steps = [Image.open(p).text["parameters"].splitlines()[-1].split(",")[0] for p in cells]
    assert steps == ["Steps: 2", "Steps: 3", "Steps: 2", "Steps: 3"]
    bad = run_sdtui(["generate", "a fox", "--demo", "--grid", "steps=1,x"])
    assert bad.returncode == 2 and "grid: steps value 'x': steps: 'x' is not a whole number" in bad.stderr


@pytest.mark.asyncio
async def test_the_app_queues_a_grid_and_shows_its_sheet(sdtui_home):
    from textual.widgets import Input

    from tests.app_helpers import make_recording_app, type_prompt, wait_for, wait_loaded
    from tui.client.screens.ask import AskScreen
    from tui.client.screens.viewer import ViewerScreen

    app = make_recording_app(width=64, height=64, steps=2, seed=4)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_loaded(pilot, app)
        await type_prompt(pilot, "a red fox")
        app.palette.grid()
        await wait_for(pilot, lambda: isinstance(app.screen, AskScreen), what="the axes question")
        app.screen.query_one(Input).value = "steps=2,3; sr=red,blue"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ViewerScreen), timeout=120, what="the contact sheet")
        sheet = app.screen.entry
        assert sheet.image_path.split("/")[-1].startswith("grid-") and app.history.count() == 4
        assert sheet.prompt == "X/Y grid: steps=2,3 x sr=red,blue of a red fox"
        assert (sheet.width, sheet.height) == Image.open(sheet.image_path).size
        from tui.client.screens.viewer import caption_text

        assert "contact sheet" in caption_text(sheet, "").plain and "2 steps" not in caption_text(sheet, "").plain
        cells = json.loads(Image.open(sheet.image_path).text[GRID_KEY])["cells"]
        assert sorted(cells) == sorted(e.image_path for e in app.history.recent(4))
        await pilot.press("r")  # the sheet is not a history entry: nothing is queued
        await pilot.pause(0.2)
        assert app.session.waiting == 0 and any("contact sheet" in str(n) for n in app.notified)


def test_the_session_tracks_a_grids_cells_by_job_number_and_a_cleared_queue_ends_them(tmp_path):
    """The Session, with no screen: a grid whose queue is cleared under its first cell finishes with
    that cell's image and the dropped cells empty, and says so once."""
    import time

    from tests.scripted_engine import scripted
    from tui.client import messages as m
    from tui.client.grid import grid_cells
    from tui.client.session import Session
    from tui.config import Settings
    from tui.engine.request import GenerationRequest
    from tui.locations import Locations
    from tui.server.host import in_process

    places = Locations(tmp_path, tmp_path)
    posted = []
    session = Session(Settings(model="demo"), places, host=in_process(places, scripted(hold_at_step=1)), save=False)
    session.post = posted.append

    def drain_until(done, limit=20.0):
        deadline = time.monotonic() + limit
        while not done():
            assert time.monotonic() < deadline, [type(p).__name__ for p in posted]
            session.drain()
            time.sleep(0.02)

    session.start()
    try:
        drain_until(lambda: session.model is not None)
        axes, requests = grid_cells("seed=1,2,3", GenerationRequest("a fox", steps=2, width=64, height=64))
        grid, problems = session.queue_grid(requests, axes)
        assert problems == [] and grid.serial == 1
        drain_until(lambda: len(grid.jobs) == 3 and session.running is not None)
        assert sorted(grid.jobs.values()) == [0, 1, 2]  # each job number answered with its cell
        assert session.clear_queue() is None
        session.hosted.engine.release()
        drain_until(lambda: any(isinstance(p, m.GridFinished) for p in posted))
        finished = [p for p in posted if isinstance(p, m.GridFinished)]
        assert len(finished) == 1 and finished[0].grid is grid and session.grids == []
        assert grid.cells[0] is not None and grid.cells[1:] == [None, None]
        ends = {p.job: p.event.ended for p in posted if isinstance(p, m.JobDone)}
        assert ends == {1: "done", 2: "dropped", 3: "dropped"}
    finally:
        session.close()
        session.history.close()
