"""Image-to-image and hires fix on the real pipelines: the loaded pipeline's components shared (no
second copy), steps and sizes as diffusers and A1111 count them, and the source, strength and
upscale recorded in the PNG and the history; from the CLI and from the app's history."""

import json
import sqlite3
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_sdtui
from tui.engine import Engine, EngineOptions, Failed, Finished, GenerationRequest, Step
from tui.engine.img2img import hires_size, steps_run
from tui.engine.request import InvalidRequest, validate_request
from tui.store.images import parse_parameters

SMALL = dict(width=128, height=128, steps=6)


@pytest.fixture(scope="module")
def source(tmp_path_factory, demo_engine):
    path = tmp_path_factory.mktemp("source") / "source.png"
    demo_engine.generate(GenerationRequest("a lighthouse", seed=1, **SMALL))[0].image.save(path)
    return path


def run(engine, **fields):
    events = []
    results = engine.generate(GenerationRequest("a lighthouse at night", **{**SMALL, **fields}), events.append)
    return results, events


def test_img2img_shares_the_loaded_components_and_runs_strength_times_steps(demo_engine, source):
    results, events = run(demo_engine, seed=4, init_image=str(source), strength=0.5)
    steps = [e for e in events if isinstance(e, Step)]
    assert [s.step for s in steps] == [1, 2, 3] and {s.total for s in steps} == {3}  # int(6 * 0.5)
    image = np.asarray(results[0].image)
    assert image.shape == (128, 128, 3)
    # The image-to-image pipeline is the loaded one's components, not a copy of them.
    img2img = demo_engine._img2img
    assert type(img2img).__name__ == "StableDiffusionImg2ImgPipeline"
    for name, component in demo_engine.pipe.components.items():
        assert img2img.components[name] is component, name
    again, _ = run(demo_engine, seed=4, init_image=str(source), strength=0.5)
    assert np.array_equal(image, np.asarray(again[0].image))
    stronger, _ = run(demo_engine, seed=4, init_image=str(source), strength=0.9)
    plain, _ = run(demo_engine, seed=4)
    assert not np.array_equal(image, np.asarray(stronger[0].image))
    assert not np.array_equal(image, np.asarray(plain[0].image))
    # The job's scheduler is the one image-to-image uses too.
    run(demo_engine, seed=4, init_image=str(source), strength=0.5, scheduler="Euler a")
    assert demo_engine._img2img.scheduler is demo_engine.pipe.scheduler


def test_a_source_of_another_size_is_resized_to_the_request(demo_engine, source):
    results, _ = run(demo_engine, seed=2, init_image=str(source), width=192, height=96)
    assert results[0].image.size == (192, 96)


def test_hires_fix_upscales_the_first_pass_and_denoises_it_again(demo_engine):
    results, events = run(demo_engine, seed=3, hires=1.5, strength=0.5)
    assert results[0].image.size == (192, 192)
    steps = [e for e in events if isinstance(e, Step)]
    assert [s.step for s in steps] == list(range(1, 10)) and {s.total for s in steps} == {9}  # 6 + int(6 * 0.5)
    first_pass, _ = run(demo_engine, seed=3)
    assert first_pass[0].image.size == (128, 128)
    # What the job is said to make (its log line, the stage) is the size it does make.
    request = GenerationRequest("x", width=128, height=128, hires=1.5, strength=0.5)
    assert request.output_size == results[0].image.size
    assert replace(request, init_image="source.png", width=192, height=192).output_size == (192, 192)


def test_bad_sources_and_strengths_are_one_sentence(demo_engine, tmp_path):
    results, events = run(demo_engine, seed=1, init_image=str(tmp_path / "gone.png"))
    assert results == [] and events[-1].message == f"init image: {tmp_path / 'gone.png'} does not exist"
    (tmp_path / "text.png").write_text("not an image")
    _, events = run(demo_engine, seed=1, init_image=str(tmp_path / "text.png"))
    assert isinstance(events[-1], Failed) and events[-1].message.startswith("init image: ")
    assert isinstance(run(demo_engine, seed=1)[1][-1], Finished)  # the engine goes on
    for fields, message in (({"strength": 0}, "strength: 0 is not allowed; use a number above 0 and at most 1"),
                            ({"hires": 1}, "hires: 1 is not allowed; use an upscale factor above 1 and at most 4, "
                                           "or 0 for none"),
                            ({"init_image": "x.png", "strength": 0.01, "steps": 20},
                             "strength: 0.01 of 20 steps runs no step; use at least 0.05")):
        with pytest.raises(InvalidRequest) as error:
            validate_request({"prompt": "x", **fields})
        assert str(error.value) == message


def test_steps_and_sizes_follow_diffusers_and_a1111():
    assert [steps_run(20, s) for s in (0.05, 0.45, 0.5, 1.0)] == [1, 9, 10, 20]
    assert hires_size(512, 768, 1.5) == (768, 1152) and hires_size(500, 300, 1.5) == (744, 448)


def test_sdxl_img2img_and_hires_use_the_loaded_components(tiny_sdxl_dir, source):
    engine = Engine(EngineOptions(model=str(tiny_sdxl_dir), preview_max_fps=0))
    engine.load()
    results, _ = run(engine, seed=1, init_image=str(source), strength=0.6)
    assert results[0].image.size == (128, 128)
    assert type(engine._img2img).__name__ == "StableDiffusionXLImg2ImgPipeline"
    assert engine._img2img.unet is engine.pipe.unet and engine._img2img.text_encoder_2 is engine.pipe.text_encoder_2
    results, _ = run(engine, seed=1, hires=2, strength=0.5, steps=2)
    assert results[0].image.size == (256, 256)


def test_a_source_whose_size_is_not_a_multiple_of_8_is_said_to_shrink(demo_server, tmp_path):
    odd = tmp_path / "odd.png"
    Image.new("RGB", (200, 150), (40, 90, 160)).save(odd)
    done = run_sdtui(["generate", "x", "--demo", "--steps", "2", "--init-image", str(odd), "--output",
                      str(tmp_path / "o.png")])
    assert done.returncode == 0, done.stderr
    assert "--init-image is 200x150; the image is made at 200x144" in done.stderr
    assert Image.open(tmp_path / "o.png").size == (200, 144)


def test_the_cli_records_source_strength_and_upscale(sdtui_home, demo_server, source, tmp_path):
    varied = run_sdtui(["generate", "a lighthouse at night", "--demo", "--steps", "4", "--seed", "8",
                        "--init-image", str(source), "--strength", "0.75", "--output", str(tmp_path / "v.png")])
    assert varied.returncode == 0, varied.stderr
    image = Image.open(tmp_path / "v.png")
    assert image.size == (128, 128)  # the source's size
    settings = parse_parameters(image.text["parameters"]).settings
    assert settings["Denoising strength"] == "0.75" and "Hires upscale" not in settings
    upscaled = run_sdtui(["generate", "a lighthouse at night", "--demo", "--steps", "4", "--seed", "8",
                          "--init-image", str(source), "--hires", "--output", str(tmp_path / "h.png")])
    assert upscaled.returncode == 0, upscaled.stderr
    assert "generating 1 image 192x192" in upscaled.stderr  # the size it makes, not its source's
    image = Image.open(tmp_path / "h.png")
    settings = parse_parameters(image.text["parameters"]).settings
    assert image.size == (192, 192) and settings["Size"] == "192x192"
    assert (settings["Denoising strength"], settings["Hires upscale"], settings["Hires upscaler"]) == (
        "0.45", "1.5", "Lanczos")
    rows = sqlite3.connect(sdtui_home / "history.db").execute(
        "SELECT extra, width FROM generations ORDER BY id").fetchall()
    assert [json.loads(extra) for extra, _ in rows] == [
        {"source": str(source), "strength": 0.75}, {"source": str(source), "strength": 0.45, "hires": 1.5}]
    from tui.store.history import History

    history = History(sdtui_home / "history.db", sdtui_home / "outputs")
    remade = history.recent(1)[0].request()
    assert (remade.init_image, remade.strength, remade.hires, remade.width) == (str(source), 0.45, 1.5, 192)
    history.close()
    missing = run_sdtui(["generate", "x", "--demo", "--init-image", str(tmp_path / "nope.png")])
    assert missing.returncode == 2 and missing.stderr.strip().endswith(f"--init-image: {tmp_path / 'nope.png'} "
                                                                       "does not exist")


@pytest.mark.asyncio
async def test_vary_and_hires_from_the_history(sdtui_home):
    from tests.app_helpers import generate_each, wait_for
    from tests.app_helpers import make_app
    from tui.client.screens.history import HistoryScreen

    app = make_app(width=128, height=128, steps=4)
    async with app.run_test(size=(100, 30)) as pilot:
        await generate_each(pilot, app, ["a lighthouse"])
        (first,) = app.history.recent(1)
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), what="the history")
        await pilot.press("right_square_bracket", "right_square_bracket", "g")
        await wait_for(pilot, lambda: app.history.count() == 2 and not app.session.busy
                       and not app.session.waiting, what="the variation")
        varied = app.history.recent(1)[0]
        assert varied.extras() == {"source": first.image_path, "strength": 0.6} and varied.seed != first.seed
        assert varied.prompt == first.prompt and (varied.width, varied.height) == (128, 128)
        from tui.client.widgets.details import entry_fields

        assert ("from image", f"{first.image_path} (strength 0.6)") in entry_fields(varied)  # the details pane
        await pilot.press("h")
        await wait_for(pilot, lambda: app.history.count() == 3 and not app.session.busy
                       and not app.session.waiting, what="the hires fix")
        upscaled = app.history.recent(1)[0]
        source = app.screen.selected.image_path
        assert upscaled.extras() == {"source": source, "strength": 0.45, "hires": 1.5}
        assert Image.open(upscaled.image_path).size == (192, 192)
