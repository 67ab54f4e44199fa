"""The model picker and model switching in the app: listing, filtering, loading what is
picked with its family's defaults, freeing the old model, and an in-app download that is
cancelled with Esc and resumed by picking the model again."""

import re
import shutil

import pytest
from textual.widgets import DataTable, Input

from tests.app_helpers import make_app, type_prompt, wait_for, wait_loaded
from tests.conftest import hub_online
from tests.fake_hub import FakeHub
from tests.scripted_engine import scripted
from tests.tiny_models import hub_cache_with
from tui.client.screens.models import ModelPickerScreen
from tui.client.widgets.log import LogPanel
from tui.client.widgets.settings import SettingsPanel
from tui.client.widgets.status import StatusPanel

pytestmark = pytest.mark.asyncio


def log_text(app) -> str:
    return "\n".join(app.main_screen.query_one(LogPanel).lines_written)


def table_names(screen) -> list[str]:
    table = screen.query_one(DataTable)
    return [str(table.get_row_at(i)[1]) for i in range(table.row_count)]


async def open_picker(pilot, app) -> ModelPickerScreen:
    await pilot.press("f3")
    await wait_for(pilot, lambda: isinstance(app.screen, ModelPickerScreen) and app.screen.entries,
                   what="the model list")
    return app.screen


async def test_pick_a_cached_sdxl_model_then_go_back_to_the_demo(sdtui_home, hub_cache, tiny_sdxl_dir,
                                                                  tiny_pipeline_dir):
    hub_cache_with(hub_cache, tiny_sdxl_dir, "someone/tiny-sdxl")
    hub_cache_with(hub_cache, tiny_pipeline_dir, "someone/tiny-sd")
    models = sdtui_home / "models"
    shutil.copytree(tiny_pipeline_dir, models / "my-sd15")
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_loaded(pilot, app)
        picker = await open_picker(pilot, app)
        names = table_names(picker)
        assert {"someone/tiny-sdxl", "someone/tiny-sd", "my-sd15"} <= {n.split("  (")[0] for n in names}
        assert any("demo model" in n for n in names)
        table = picker.query_one(DataTable)
        memory = [str(table.get_row_at(i)[2]) for i in range(table.row_count)]
        # The need against what this machine may use: "fits 0.02/20 GB", "+" where the family's job memory
        # was never measured (SDXL's), so only the weights are counted.
        assert all(re.fullmatch(r"(fits|tight|swaps) [0-9.]+\+?/[0-9.]+ GB", m) for m in memory if m), memory
        assert any(memory)
        await pilot.press(*"xl")  # filtering: the cached SDXL model, then the SDXL models to get
        assert table_names(picker)[:2] == ["someone/tiny-sdxl", "models to get"]
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.session.hosted.server.engine.loaded and app.session.hosted.server.engine.model_label == "someone/tiny-sdxl",
                       what="the SDXL model")
        await wait_for(pilot, lambda: app.settings.width == 256, what="the SDXL family's size")
        panel = app.main_screen.query_one(SettingsPanel)
        assert panel.query_one("#setting-model", Input).value == "someone/tiny-sdxl"
        assert (app.settings.width, app.settings.height) == (256, 256)  # this tiny SDXL's native size
        assert "SDXL defaults applied: width 256, height 256" in log_text(app)
        assert "unloaded demo model" in log_text(app)

        picker = await open_picker(pilot, app)
        assert table_names(picker)[0].startswith("someone/tiny-sdxl")  # most recent first
        await pilot.press(*"demo", "enter")
        await wait_for(pilot, lambda: app.session.hosted.server.engine.loaded and app.session.hosted.server.engine.family.endswith("(demo)"),
                       what="the demo model again")
        await wait_for(pilot, lambda: app.settings.width == 512, what="the SD 1.x size")
        assert "unloaded someone/tiny-sdxl" in log_text(app)


async def test_a_typed_model_that_is_not_here_fails_clearly_and_the_app_goes_on(sdtui_home, hub_cache):
    from tui.engine.models import offline_message

    # The picker's side, on the scripted engine: the load fails as an uncached Hub model does with the Hub off.
    app = make_app(engine=scripted(load_errors={"nobody/not-here": offline_message("nobody/not-here",
                                                                                   "HF_HUB_OFFLINE is set")}))
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_loaded(pilot, app)
        picker = await open_picker(pilot, app)
        await pilot.press(*"zzz", "enter")  # matches nothing and is no model name: the picker says so
        assert isinstance(app.screen, ModelPickerScreen) and app.session.hosted.server.engine.loaded
        assert "nothing here matches 'zzz'" in str(picker.query_one("#picker-hint").render())
        picker.query_one("#picker-filter", Input).value = ""
        await pilot.press(*"nobody/not-here")
        assert table_names(picker)[0].startswith("load nobody/not-here")
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("Still using demo" in n.message for n in app._notifications),
                       what="the load failure")
        # Checked before unloading: the working model stays, and the settings say so again.
        assert app.session.hosted.server.engine.loaded and app.session.hosted.server.engine.loaded_model == "demo"
        assert app.settings.model == "demo" and app.session.settings.model == "demo"
        assert "demo model" in app.sub_title and "no model loaded" not in app.sub_title
        assert not isinstance(app.screen, ModelPickerScreen)
        await type_prompt(pilot, "still works")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.history.count() == 1 and not app.session.busy, what="an image")
        await pilot.press("f3")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelPickerScreen), what="the picker again")
        await pilot.press("escape")
        assert not isinstance(app.screen, ModelPickerScreen)


async def test_a_download_in_the_app_cancels_with_escape_and_resumes(sdtui_home, hub_cache, tiny_pipeline_dir,
                                                                     monkeypatch):
    hub_online(monkeypatch)
    with FakeHub() as hub:
        hub.add_folder("someone/tiny-sd", tiny_pipeline_dir)
        hub.delay_per_chunk = 0.05
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        app = make_app()
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_loaded(pilot, app)
            status = app.main_screen.query_one(StatusPanel)
            app.palette.use_model("someone/tiny-sd")
            await wait_for(pilot, lambda: status.state == "downloading", what="the download to start")
            await wait_for(pilot, lambda: hub.bytes_sent > 500_000, what="some bytes")
            await pilot.press("escape")
            await wait_for(pilot, lambda: any("Still using demo" in n.message for n in app._notifications),
                           what="the cancelled download")
            assert app.session.hosted.server.engine.loaded_model == "demo", "a cancelled download keeps the loaded model"
            assert "cancelling the download" in log_text(app)
            assert "cancelled; choose it again to resume" in log_text(app)
            assert status.state == "idle"
            hub.delay_per_chunk = 0
            hub.requests.clear()
            app.palette.use_model("someone/tiny-sd")
            await wait_for(pilot, lambda: app.session.hosted.server.engine.loaded and app.session.hosted.server.engine.model_label == "someone/tiny-sd",
                           what="the resumed download")
            assert any(r for _, r in hub.requests), "the second download did not resume with a range"


async def test_choosing_the_loaded_model_again_does_nothing(sdtui_home, hub_cache):
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_loaded(pilot, app)
        pipe = app.session.hosted.server.engine.pipe
        app.main_screen.query_one(SettingsPanel).query_one("#setting-model", Input).focus()
        await pilot.press("enter")  # Enter in the unchanged Model field
        await pilot.pause(0.3)
        app.palette.use_model("demo")  # what F3 on the marked entry does
        await pilot.pause(0.3)
        assert app.session.hosted.server.engine.pipe is pipe and not app.session.busy
        log = app.main_screen.query_one(LogPanel).lines_written
        assert sum("demo is already loaded; nothing to do" in line for line in log) >= 1
        assert not any("loading demo model" in line for line in log[-5:])


async def test_a_family_that_cannot_use_the_sampler_gets_its_own_and_the_log_says_so(sdtui_home):
    """With family_defaults off the size and steps stay, but a Z-Image model cannot run an SD sampler:
    the Session takes the family's own, the panel offers only the family's samplers, and the log
    says why."""
    from tui.engine.families import SD_SAMPLERS, ZIMAGE, ModelFamily, family

    def family_of(model: str) -> ModelFamily:
        return ModelFamily(ZIMAGE, turbo=True, native_size=1024) if "z-image" in model else ModelFamily("sd1")

    app = make_app(engine=scripted(family_info_for=family_of), family_defaults=False, scheduler="DPM++ 2M Karras")
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_loaded(pilot, app)
        panel = app.main_screen.query_one(SettingsPanel)
        await panel.build()
        scheduler = panel.query_one("#setting-scheduler")
        assert [value for _, value in scheduler._options] == list(SD_SAMPLERS)
        app.main_screen.change_setting("model", "someone/z-image-turbo")
        await wait_for(pilot, lambda: app.settings.scheduler == "FlowMatch Euler", what="the family's sampler")
        await wait_for(pilot, lambda: scheduler.value == "FlowMatch Euler", what="the field showing it")
        assert [value for _, value in scheduler._options] == list(family(ZIMAGE).samplers)
        assert "scheduler: DPM++ 2M Karras does not work with Z-Image Turbo models; using FlowMatch Euler" \
            in log_text(app)
        assert app.settings.width == 128  # family_defaults off: the size stays (the tests' settings)


async def test_a_distilled_family_names_its_guidance_and_hides_the_negative_prompt_it_ignores(sdtui_home):
    from tui.engine.families import FLUX, ModelFamily

    def family_of(model: str) -> ModelFamily:
        return ModelFamily(FLUX, native_size=1024) if "flux" in model else ModelFamily("sd1")

    app = make_app(engine=scripted(family_info_for=family_of), negative_prompt="blurry")
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_loaded(pilot, app)
        panel = app.main_screen.query_one(SettingsPanel)
        await panel.build()
        negative = app.main_screen.query_one("#negative", Input)
        assert negative.display and str(panel.query_one("#name-setting-guidance").render()) == "Guidance"
        app.main_screen.change_setting("model", "someone/flux1-dev")
        await wait_for(pilot, lambda: not negative.display, what="the negative prompt hidden")
        assert str(panel.query_one("#name-setting-guidance").render()) == "Distilled CFG"
        assert panel.query_one("#setting-shift").parent.display  # a flow-matching family takes a shift
        assert "negative prompt: FLUX.1 models do not read one; it is kept for other models" in log_text(app)
        assert app.settings.negative_prompt == "blurry"
        app.main_screen.change_setting("model", "demo")
        await wait_for(pilot, lambda: negative.display, what="the negative prompt back")
        assert str(panel.query_one("#name-setting-guidance").render()) == "Guidance"
        assert not panel.query_one("#setting-shift").parent.display


async def test_a_model_named_at_start_takes_its_family_defaults_but_not_over_flags_given(sdtui_home):
    """`sdtui --model FLUX --steps 6` with config.toml's settings made for an SD model: FLUX.1's
    size, guidance and sampler apply once it has loaded, the steps given on the command line stay."""
    from tui.engine.families import FLUX, ModelFamily

    def family_of(model: str) -> ModelFamily:
        return ModelFamily(FLUX, native_size=1024) if "flux" in model else ModelFamily("sd1")

    app = make_app(engine=scripted(family_info_for=family_of), model="someone/flux1-dev", steps=6, guidance=7.0)
    app.session.switching_at_start(kept={"model", "steps"})
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_loaded(pilot, app)
        await wait_for(pilot, lambda: app.settings.guidance == 3.5, what="FLUX.1's distilled guidance")
        assert (app.settings.width, app.settings.height, app.settings.steps) == (1024, 1024, 6)
        assert app.settings.scheduler == "FlowMatch Euler"
        assert "FLUX.1 defaults applied" in log_text(app)
