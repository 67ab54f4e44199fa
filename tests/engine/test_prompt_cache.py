"""Prompt embeddings kept between jobs, on tiny real SD 1.x, Z-Image and FLUX.1 pipelines: a re-roll
runs no text encoder (counted with forward hooks) and gives the image a fresh engine gives for its seed;
a new prompt or a change of the LoRAs in the text encoders runs them again."""

from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tui.engine import Engine, EngineOptions, GenerationRequest

FLOW = dict(width=32, height=32, steps=2, scheduler="FlowMatch Euler")
SETTINGS = {"sd": dict(width=64, height=64, steps=2, scheduler="Euler", guidance=7.0),
            "z-image": dict(FLOW, guidance=0.0), "flux": dict(FLOW, guidance=3.5)}
# Each test its own prompts, so none finds another's in the cache whatever their order.
REFERENCES = (("a red fox", 2), ("a blue heron", 3), ("a green frog", 2), ("an old oak", 3))


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tiny_pipeline_dir):
    from tests.tiny_flux import build_tiny_flux
    from tests.tiny_models import build_tiny_z_image

    root = tmp_path_factory.mktemp("models")
    build_tiny_z_image().save_pretrained(root / "tiny-z-image-turbo")
    build_tiny_flux().save_pretrained(root / "tiny-flux-dev")
    return {"sd": tiny_pipeline_dir, "z-image": root / "tiny-z-image-turbo", "flux": root / "tiny-flux-dev"}


@pytest.fixture(scope="module", params=list(SETTINGS))
def family(request, folders):
    """The family's name, the images of another engine that encoded every prompt (each a new one to
    it), and the engine under test, with the classes of its text encoders."""
    name = request.param
    reference = Engine(EngineOptions(model=str(folders[name]), preview_max_fps=0))
    images = {(prompt, seed): image(reference, name, prompt, seed) for prompt, seed in REFERENCES}
    engine = Engine(EngineOptions(model=str(folders[name]), preview_max_fps=0))
    engine.load()
    classes = tuple({type(getattr(engine.pipe, e.component)) for e in engine.family_info.family.encoders
                     if getattr(engine.pipe, e.component, None) is not None})
    yield SimpleNamespace(name=name, reference=images, engine=engine, encoder_classes=classes)
    engine.unload()


def image(engine: Engine, name: str, prompt: str, seed: int, **arguments) -> np.ndarray:
    finished = engine.generate(GenerationRequest(prompt, seed=seed, **SETTINGS[name], **arguments))
    assert len(finished) == 1
    return np.asarray(finished[0].image)


@contextmanager
def counting(classes: tuple[type, ...]):
    """The forward calls of text encoders of ``classes``: by class, as a dropped encoder comes back
    as a new module."""
    calls = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, output: calls.append(type(module).__name__) if type(module) in classes else None)
    try:
        yield calls
    finally:
        handle.remove()


def test_a_reroll_runs_no_text_encoder_and_gives_the_image_of_its_seed(family, caplog):
    name, engine = family.name, family.engine
    (first, _), (second, _) = REFERENCES[:2]
    with counting(family.encoder_classes) as calls:
        image(engine, name, first, 1)
    assert calls, "the first job encodes its prompt"
    with counting(family.encoder_classes) as calls, caplog.at_level("INFO", logger="tui.engine"):
        rerolled = image(engine, name, first, 2)
    assert calls == []
    assert "prompt embeddings reused: the text encoders did not run" in caplog.text
    assert np.array_equal(rerolled, family.reference[first, 2])
    with counting(family.encoder_classes) as calls:
        assert np.array_equal(image(engine, name, second, 3), family.reference[second, 3])
    assert calls, "a new prompt is encoded"


def test_a_change_of_the_loras_in_the_text_encoders_encodes_again(demo_engine, tiny_pipeline_dir, tmp_path):
    from tests.tiny_models import save_tiny_lora
    from tui.engine.networks import LORAS

    pipe = demo_engine.pipe
    save_tiny_lora(pipe.unet, tmp_path / LORAS / "ink-te.safetensors", text_encoder=pipe.text_encoder)
    save_tiny_lora(pipe.unet, tmp_path / LORAS / "ink.safetensors")  # the UNet's layers alone
    engine = Engine(EngineOptions(model=str(tiny_pipeline_dir), preview_max_fps=0, models_dir=str(tmp_path)))
    engine.load()
    clip = (type(engine.pipe.text_encoder),)

    def encodes(prompt: str, seed: int = 1) -> bool:
        with counting(clip) as calls:
            assert len(engine.generate(GenerationRequest(prompt, seed=seed, **SETTINGS["sd"]))) == 1
        return bool(calls)

    assert encodes("a fox <lora:ink:1>")
    assert not encodes("a fox <lora:ink:0.5>")  # a LoRA of the UNet alone leaves the embeddings as they were
    assert encodes("a fox <lora:ink-te:1>")
    assert not encodes("a fox <lora:ink-te:1>", seed=2)
    assert encodes("a fox <lora:ink-te:0.5>")  # its weight in the text encoder changed
    assert encodes("a fox <lora:ink:1>")  # none in the text encoder again
