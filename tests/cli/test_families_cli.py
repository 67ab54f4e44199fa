"""Each new model family end to end: a tiny random-weight pipeline saved as a diffusers folder,
``sdtui generate --model FOLDER`` through the server, and the PNG it writes equal, pixel for pixel on
the CPU, to bare diffusers' image for the same seed, steps, guidance and sampler; its metadata names
the guidance as the family does, and its history row is there."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image

from tests.bare_diffusers import bare_image, bare_pipeline
from tests.conftest import run_sdtui
from tui.store.images import parse_parameters

PROMPT, SEED, STEPS, SIZE = "a red fox in the snow", 7, 2, 64


def _z_image(folder):
    from tests.tiny_models import build_tiny_z_image

    build_tiny_z_image().save_pretrained(folder)


def _sd3(folder):
    from tests.tiny_sd3 import build_tiny_sd3

    build_tiny_sd3().save_pretrained(folder)


def _flux(folder):
    from tests.tiny_flux import build_tiny_flux

    build_tiny_flux().save_pretrained(folder)


def _kontext(folder):
    from tests.tiny_flux import build_tiny_flux

    build_tiny_flux(kontext=True).save_pretrained(folder)


def _klein(folder):
    from tests.tiny_flux2 import build_tiny_flux2_klein

    build_tiny_flux2_klein().save_pretrained(folder)


def _qwen_image(folder):
    from tests.tiny_qwen_image import save_tiny_qwen_image

    save_tiny_qwen_image("t2i", folder)


@dataclass(frozen=True)
class Case:
    """One family: how its tiny folder is made, what it is recognised as, the guidance keyword (and
    value: the family's default, as no --guidance is given) a bare diffusers call passes, and the
    guidance as the image's parameters say it."""

    name: str  # the folder's name (none says "turbo" or "schnell": the family's own defaults apply)
    save: Callable[[Any], None]
    family: str
    pipeline: str
    bare_guidance: dict[str, Any]
    parameters: dict[str, str]
    bare_extra: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("tiny-z-image", _z_image, "Z-Image", "ZImagePipeline", {"guidance_scale": 5.0}, {"CFG scale": "5"}),
    Case("tiny-sd3", _sd3, "SD3", "StableDiffusion3Pipeline", {"guidance_scale": 3.5}, {"CFG scale": "3.5"}),
    Case("tiny-flux-dev", _flux, "FLUX.1", "FluxPipeline", {"guidance_scale": 3.5},
         {"CFG scale": "1", "Distilled CFG Scale": "3.5"}),
    # Kontext rescales height and width to max_area (1024**2 unless given): the engine gives the area asked.
    Case("tiny-kontext", _kontext, "FLUX.1 Kontext", "FluxKontextPipeline", {"guidance_scale": 2.5},
         {"CFG scale": "1", "Distilled CFG Scale": "2.5"}, {"max_area": SIZE * SIZE}),
    # Step-distilled: no guidance is passed (the pipeline ignores guidance_scale), and 0 is recorded.
    Case("tiny-flux2-klein", _klein, "FLUX.2 klein", "Flux2KleinPipeline", {}, {"CFG scale": "0"}),
    # True CFG runs only with a negative prompt: with none given, " " as the pipeline's docs say.
    Case("tiny-qwen-image", _qwen_image, "Qwen-Image", "QwenImagePipeline",
         {"true_cfg_scale": 4.0, "negative_prompt": " "}, {"CFG scale": "4"}),
]


@pytest.fixture(scope="module", params=CASES, ids=[c.family for c in CASES])
def saved(request, tmp_path_factory):
    case = request.param
    folder = tmp_path_factory.mktemp("families") / case.name
    case.save(folder)
    return case, folder


def test_generate_through_the_server_gives_bare_diffusers_image(saved, demo_server, sdtui_home, tmp_path):
    from tui.engine.catalog import folder_family

    case, folder = saved
    model = folder_family(folder)
    assert model.label == case.family
    # The bare call's keyword is the registry's, and its value the family's default.
    expected_guidance = {model.guidance.argument: model.defaults.guidance} if model.guidance.argument else {}
    assert expected_guidance == {k: v for k, v in case.bare_guidance.items() if k != "negative_prompt"}

    output = tmp_path / "out.png"
    result = run_sdtui(["generate", PROMPT, "--model", str(folder), "--steps", str(STEPS), "--width", str(SIZE),
                        "--height", str(SIZE), "--seed", str(SEED), "--output", str(output)])
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{output}\n"
    assert f"{case.family} defaults:" in result.stderr  # the family's guidance and sampler, said

    png = Image.open(output)
    assert png.size == (SIZE, SIZE)
    pixels = np.asarray(png.convert("RGB"))
    assert pixels.std() > 0  # a picture, not a flat field
    pipe = bare_pipeline(folder)
    assert type(pipe).__name__ == case.pipeline
    assert np.array_equal(pixels, bare_image(pipe, PROMPT, SEED, STEPS, SIZE, SIZE, **case.bare_guidance,
                                             **case.bare_extra))

    parsed = parse_parameters(png.text["parameters"])
    assert parsed.prompt == PROMPT
    settings = parsed.settings
    assert {k: settings.get(k) for k in ("CFG scale", "Distilled CFG Scale") if k in settings} == case.parameters
    assert (settings["Steps"], settings["Seed"], settings["Size"], settings["Sampler"]) == (
        str(STEPS), str(SEED), f"{SIZE}x{SIZE}", "Euler")

    rows = sqlite3.connect(sdtui_home / "history.db").execute(
        "SELECT prompt, seed, steps, guidance, width, height, scheduler, status, image_path FROM generations"
    ).fetchall()
    guidance = model.defaults.guidance
    assert rows == [(PROMPT, SEED, STEPS, guidance, SIZE, SIZE, "FlowMatch Euler", "done", str(output))]
