"""A new family in the app, end to end against the real server and engine: a tiny FLUX.1 model picked
in the model picker makes bare diffusers' image, and a FLUX.1 Kontext model edits it from the
history (e, an instruction), the edit saved with its parent, which the details name and u goes to."""

import shutil

import numpy as np
import pytest
from PIL import Image

from tests.app_helpers import make_app, plain, type_prompt, wait_for, wait_loaded
from tests.bare_diffusers import bare_image, bare_pipeline
from tui.client.screens.ask import AskScreen
from tui.client.screens.history import HistoryScreen
from tui.client.screens.models import ModelPickerScreen
from tui.client.widgets.settings import SettingsPanel
from tui.client.widgets.thumbnail import Thumbnail

pytestmark = pytest.mark.asyncio
PROMPT, INSTRUCTION, SIZE, STEPS = "a red fox in the snow", "make it night", 64, 2


@pytest.fixture(scope="module")
def flux_folders(tmp_path_factory):
    """A tiny FLUX.1 dev (guidance embedding) and FLUX.1 Kontext, saved as diffusers folders."""
    from tests.tiny_flux import build_tiny_flux

    root = tmp_path_factory.mktemp("flux-models")
    build_tiny_flux().save_pretrained(root / "tiny-flux-dev")
    build_tiny_flux(kontext=True).save_pretrained(root / "tiny-kontext")
    return root / "tiny-flux-dev", root / "tiny-kontext"


async def pick_model(pilot, app, typed: str, family: str) -> None:
    """Choose the model matching ``typed`` in the picker (F3), wait for it to load, and set the small
    size and steps again (switching applies the family's 1024 px and 28 steps)."""
    await pilot.press("f3")
    await wait_for(pilot, lambda: isinstance(app.screen, ModelPickerScreen) and app.screen.entries,
                   what="the model list")
    await pilot.press(*typed, "enter")
    await wait_for(pilot, lambda: app.session.family is not None and app.session.family.label == family
                   and not app.session.loading and not app.session.busy, what=f"the {family} model")
    await wait_for(pilot, lambda: app.settings.width == 1024, what=f"{family}'s defaults")
    panel = app.main_screen.query_one(SettingsPanel)
    for name, value in (("width", SIZE), ("height", SIZE), ("steps", STEPS)):
        panel.set_value(name, value)
    await wait_for(pilot, lambda: (app.settings.width, app.settings.height, app.settings.steps) == (SIZE, SIZE, STEPS),
                   what="the small size and steps")


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


async def test_a_flux_image_equals_bare_diffusers_and_a_kontext_edit_of_it_records_its_parent(sdtui_home,
                                                                                                 flux_folders,
                                                                                                 monkeypatch):
    from tests.tiny_flux import shrink_kontext_resolutions

    shrink_kontext_resolutions(monkeypatch, SIZE)  # the server runs on a thread of this process
    dev, kontext = flux_folders
    for folder in flux_folders:  # local models, as the picker lists them
        shutil.copytree(folder, sdtui_home / "models" / folder.name)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_loaded(pilot, app)
        await pick_model(pilot, app, "flux-dev", "FLUX.1")
        assert (app.settings.guidance, app.settings.scheduler) == (3.5, "FlowMatch Euler")  # FLUX.1 dev's
        await type_prompt(pilot, PROMPT)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.history.count() == 1 and not app.session.busy, what="the FLUX.1 image")
        made = app.history.recent(1)[0]
        assert (made.status, made.seed, made.steps, made.guidance) == ("done", 7, STEPS, 3.5)
        flux = bare_pipeline(dev)
        expected = bare_image(flux, PROMPT, made.seed, STEPS, SIZE, SIZE, guidance_scale=3.5)
        assert expected.std() > 0 and np.array_equal(pixels(made.image_path), expected)

        await pick_model(pilot, app, "kontext", "FLUX.1 Kontext")
        assert app.settings.guidance == 2.5  # Kontext's own default
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), what="the history")
        history = app.screen
        await wait_for(pilot, lambda: history.query_one("#large", Thumbnail).image is not None, what="the image")
        assert history.selected.id == made.id
        assert np.array_equal(np.asarray(history.query_one("#large", Thumbnail).image.convert("RGB")), expected)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, AskScreen), what="the instruction's question")
        await pilot.press(*["space" if c == " " else c for c in INSTRUCTION], "enter")
        await wait_for(pilot, lambda: app.history.count() == 2 and not app.session.busy, what="the edit")
        edit = app.history.recent(1)[0]
        assert (edit.status, edit.prompt, edit.width, edit.height, edit.guidance) == ("done", INSTRUCTION, SIZE,
                                                                                      SIZE, 2.5)
        assert edit.extras()["source"] == made.image_path and edit.extras()["edit"]
        assert app.history.parent(edit).id == made.id
        source = Image.open(made.image_path).convert("RGB")
        edited = bare_image(bare_pipeline(kontext), INSTRUCTION, edit.seed, STEPS, SIZE, SIZE, image=source,
                            guidance_scale=2.5, max_area=SIZE * SIZE)
        assert np.array_equal(pixels(edit.image_path), edited) and not np.array_equal(edited, expected)

        assert isinstance(app.screen, HistoryScreen) and history.selected.id == made.id  # the selection stays
        await pilot.press("up")
        await wait_for(pilot, lambda: history.selected.id == edit.id, what="the edit selected")
        details = plain(history.query_one("#param-text"))
        assert f"#{made.id} \"{PROMPT}\"" in details and "made from" in details
        assert "edited from" in details and made.image_path in details
        await pilot.press("u")
        await wait_for(pilot, lambda: history.selected.id == made.id, what="the parent")
        assert "edited from" not in plain(history.query_one("#param-text"))
