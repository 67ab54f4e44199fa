"""Z-Image through the engine: a tiny random-weight Z-Image folder (tokenizer built here) is
recognised from its model_index.json, loads, generates with previews of its 16-channel latents,
and runs image to image on the same components."""

import numpy as np
import pytest
from PIL import Image

from tui.engine import Engine, EngineOptions, Failed, GenerationRequest, Loaded
from tui.engine.catalog import folder_family
from tui.engine.events import Step
from tui.engine.families import ZIMAGE, family_defaults

TINY = dict(width=32, height=32, steps=2, seed=3, scheduler="FlowMatch Euler")


@pytest.fixture(scope="module")
def z_image_dir(tmp_path_factory):
    from tests.tiny_models import build_tiny_z_image

    folder = tmp_path_factory.mktemp("models") / "tiny-z-image-turbo"
    build_tiny_z_image().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def engine(z_image_dir):
    engine = Engine(EngineOptions(model=str(z_image_dir), preview_max_fps=0))
    engine.load()
    return engine


def test_a_z_image_folder_is_recognised_with_its_turbo_defaults(z_image_dir):
    model = folder_family(z_image_dir)
    assert (model.base, model.label, model.native_size, model.latent_format) == (ZIMAGE, "Z-Image Turbo", 1024,
                                                                               "flux")
    assert family_defaults(model) == {"width": 1024, "height": 1024, "steps": 8, "guidance": 0.0,
                                      "scheduler": "FlowMatch Euler"}


def test_z_image_generates_with_previews_of_its_latents(engine):
    assert engine.family == "Z-Image Turbo" and engine.family_info.base == ZIMAGE
    events = []
    finished = engine.generate(GenerationRequest("a red fox", guidance=0.0, **TINY), events.append)
    assert len(finished) == 1 and finished[0].image.size == (32, 32), [e for e in events if isinstance(e, Failed)]
    previews = [e.preview for e in events if isinstance(e, Step) and e.preview is not None]
    latent_side = 32 // engine.pipe.vae_scale_factor  # the tiny VAE's factor is 2, real ones' 8
    assert previews and previews[0].size == (latent_side, latent_side)  # a preview pixel per latent
    again = engine.generate(GenerationRequest("a red fox", guidance=0.0, **TINY))
    assert np.array_equal(np.asarray(again[0].image), np.asarray(finished[0].image))
    # Guidance above 0 runs classifier-free guidance with the negative prompt: another image.
    guided = engine.generate(GenerationRequest("a red fox", negative_prompt="blurry", guidance=3.0, **TINY))
    assert not np.array_equal(np.asarray(guided[0].image), np.asarray(finished[0].image))


def test_z_image_runs_image_to_image_and_refuses_samplers_it_cannot_use(engine, tmp_path):
    source = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(source)
    events = []
    finished = engine.generate(GenerationRequest("a red fox", guidance=0.0, init_image=str(source), strength=0.5,
                                                 **TINY), events.append)
    assert len(finished) == 1 and finished[0].image.size == (32, 32), [e for e in events if isinstance(e, Failed)]
    events = []
    engine.generate(GenerationRequest("a red fox", **{**TINY, "scheduler": "DPM++ 2M Karras"}), events.append)
    failed = [e for e in events if isinstance(e, Failed)]
    assert failed and "does not work with Z-Image models" in failed[0].message
    assert not any(isinstance(e, Loaded) for e in events)


def test_a_shift_replaces_the_models_schedule_for_flow_samplers(engine):
    base = engine.generate(GenerationRequest("a red fox", guidance=0.0, **TINY))
    shifted = engine.generate(GenerationRequest("a red fox", guidance=0.0, shift=9.0, **TINY))
    assert engine.pipe.scheduler.config.shift == 9.0 and not engine.pipe.scheduler.config.use_dynamic_shifting
    assert not np.array_equal(np.asarray(shifted[0].image), np.asarray(base[0].image))
    again = engine.generate(GenerationRequest("a red fox", guidance=0.0, **TINY))
    assert engine.pipe.scheduler.config.shift == 3.0  # the model's own, back
    assert np.array_equal(np.asarray(again[0].image), np.asarray(base[0].image))


def test_a_long_or_weighted_prompt_is_read_as_plain_text_and_a_cut_is_said(engine):
    from tui.engine.conditioning import prompt_arguments
    from tui.engine.families import family

    long = "a red fox in a snowy forest at dawn, " * 120
    arguments = prompt_arguments(engine.pipe, family(ZIMAGE), f"(red:1.3) {long}", "")
    assert arguments.kwargs["prompt"].startswith("red a red fox")
    weights, cut = arguments.notes
    assert "no CLIP text encoder sdtui can weight" in weights
    assert cut.startswith("prompt: ") and cut.endswith("tokens; Z-Image's Qwen3 text encoder reads the first 512, "
                                                       "the rest is cut")
    assert prompt_arguments(engine.pipe, family(ZIMAGE), "a red fox", "").notes == ()


def test_its_family_is_read_from_disk_before_loading_to_choose_the_dtype(z_image_dir, monkeypatch):
    from tui.engine import device

    asked = []
    choose = device.choose_dtype
    monkeypatch.setattr(device, "choose_dtype", lambda *args: asked.append(args) or choose(*args))
    loaded = []
    Engine(EngineOptions(model=str(z_image_dir), device="cpu")).load(loaded.append)
    assert asked[0][2].id == ZIMAGE
    assert [e.dtype for e in loaded if isinstance(e, Loaded)] == ["float32"]
