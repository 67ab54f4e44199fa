"""Prompt embeddings kept between jobs, and text encoders freed while images denoise, on tiny real
SD 1.x, Z-Image and FLUX.1 pipelines: a re-roll runs no text encoder (counted with forward hooks) and
gives the image a fresh engine gives for its seed; a new prompt or a change of the LoRAs in the text
encoders runs them again; with ``text_encoders = "free"`` the encoders leave after encoding and come
back from the model's folder for a new prompt, and the images stay the same."""

from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tui.engine import Engine, EngineOptions, GenerationRequest
from tui.engine.device import DROP, GB, KEEP, TO_RAM, DeviceError, choose_text_encoder_residency
from tui.engine.memory import format_bytes
from tui.engine.weights import module_bytes

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
    reference = Engine(EngineOptions(model=str(folders[name]), preview_max_fps=0, text_encoders="keep"))
    images = {(prompt, seed): image(reference, name, prompt, seed) for prompt, seed in REFERENCES}
    engine = Engine(EngineOptions(model=str(folders[name]), preview_max_fps=0))
    engine.load()
    classes = tuple({type(getattr(engine.pipe, e.component)) for e in engine.family_info.family.encoders
                     if getattr(engine.pipe, e.component, None) is not None})
    yield SimpleNamespace(name=name, reference=images, engine=engine, encoder_classes=classes)
    engine.unload()


@pytest.fixture
def freeing(family):
    family.engine.options.text_encoders = "free"
    yield family
    family.engine.options.text_encoders = "auto"


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


def encoders_present(engine: Engine) -> list[bool]:
    return [getattr(engine.pipe, name) is not None for name in engine._encoders.names]


def weight_bytes(pipe) -> int:
    return sum(module_bytes(m) for m in pipe.components.values() if isinstance(m, torch.nn.Module))


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


def test_freed_encoders_leave_after_encoding_and_come_back_for_a_new_prompt(freeing, caplog):
    name, engine = freeing.name, freeing.engine
    (first, _), (second, _) = REFERENCES[2:]
    image(engine, name, first, 1)  # encoded, then the encoders leave as the first step starts
    assert not any(encoders_present(engine))
    assert weight_bytes(engine.pipe) == engine._weight_bytes - engine._encoders.bytes < engine._weight_bytes
    with counting(freeing.encoder_classes) as calls:
        assert np.array_equal(image(engine, name, first, 2), freeing.reference[first, 2])  # a re-roll without them
    assert calls == [] and not any(encoders_present(engine))
    with counting(freeing.encoder_classes) as calls, caplog.at_level("INFO", logger="tui.engine"):
        assert np.array_equal(image(engine, name, second, 3), freeing.reference[second, 3])
    assert calls and not any(encoders_present(engine))  # read again, encoded, dropped again
    assert f"text encoders back on the cpu from {engine._encoders.parts.folder}" in caplog.text
    assert "text encoders dropped" in caplog.text


@pytest.mark.parametrize("family", ["z-image"], indirect=True)  # the siblings are made alike for every family
def test_an_image_to_image_sibling_shares_the_embeddings_and_never_holds_a_dropped_encoder(freeing, tmp_path):
    from PIL import Image

    name, engine = freeing.name, freeing.engine
    source = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(source)
    image(engine, name, "a white owl", 1)
    with counting(freeing.encoder_classes) as calls:  # the text-to-image pipeline's entry: the same encode_prompt
        image(engine, name, "a white owl", 1, init_image=str(source), strength=0.5)
    assert calls == []
    image(engine, name, "a grey wolf", 1, init_image=str(source), strength=0.5)
    assert engine._img2img.text_encoder is None and engine.pipe.text_encoder is None


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


def test_encoders_holding_a_lora_stay_when_freed(demo_engine, tiny_pipeline_dir, tmp_path, caplog):
    from tests.tiny_models import save_tiny_lora
    from tui.engine.networks import LORAS

    pipe = demo_engine.pipe
    save_tiny_lora(pipe.unet, tmp_path / LORAS / "ink-te.safetensors", text_encoder=pipe.text_encoder)
    engine = Engine(EngineOptions(model=str(tiny_pipeline_dir), preview_max_fps=0, models_dir=str(tmp_path),
                                  text_encoders="free"))
    with caplog.at_level("INFO", logger="tui.engine"):
        engine.generate(GenerationRequest("a fox <lora:ink-te:1>", seed=1, **SETTINGS["sd"]))
    assert engine.pipe.text_encoder is not None
    assert "text encoders stay: a LoRA or embedding is loaded into them" in caplog.text


def test_an_unload_says_what_it_freed_and_forgets_the_embeddings(tiny_pipeline_dir):
    from tui.engine.events import Unloaded

    events = []
    engine = Engine(EngineOptions(model=str(tiny_pipeline_dir), preview_max_fps=0))
    engine.generate(GenerationRequest("a fox", seed=1, **SETTINGS["sd"]))
    assert len(engine._prompts) > 0
    engine.unload(events.append)
    assert [type(e) for e in events] == [Unloaded]
    assert isinstance(events[0].freed, int) and events[0].freed >= 0  # RSS on the CPU: the allocator may keep it
    assert len(engine._prompts) == 0


# --- the decision, pure -----------------------------------------------------------------------

FLUX_DEV = dict(resident_weight_bytes=int(33.7 * GB), encoder_bytes=int(9.8 * GB), job_working_bytes=int(2.6 * GB))
Z_IMAGE = dict(resident_weight_bytes=int(20.5 * GB), encoder_bytes=int(8.0 * GB), job_working_bytes=int(2.8 * GB))


@pytest.mark.parametrize("device,limit_gb,facts,value", [
    ("cuda", 80, FLUX_DEV, KEEP),  # an H100: everything fits
    ("cuda", 24, FLUX_DEV, TO_RAM),  # a 24 GB card: T5-XXL waits in RAM
    ("mps", 32, Z_IMAGE, KEEP),  # 23.3 GB of 32
    ("mps", 16, Z_IMAGE, DROP),  # unified memory: moving it frees nothing, so it is dropped
    ("cpu", 16, Z_IMAGE, DROP),
])
def test_auto_frees_them_when_the_weights_and_a_job_would_not_fit(device, limit_gb, facts, value):
    decision = choose_text_encoder_residency("auto", device, **facts, device_limit_bytes=limit_gb * GB)
    assert decision.name == "text encoders" and decision.value == value
    need = facts["resident_weight_bytes"] + facts["job_working_bytes"]
    assert decision.reason.startswith(f"auto: {'kept, ' if value == KEEP else ''}weights ")
    assert f"= {format_bytes(need)}" in decision.reason
    assert f"the {format_bytes(limit_gb * GB)} {device} may hold" in decision.reason
    if value != KEEP:
        assert f"without the encoders' {format_bytes(facts['encoder_bytes'])}" in decision.reason


def test_the_setting_and_what_cannot_be_freed_decide_before_the_figures():
    facts = dict(Z_IMAGE, device_limit_bytes=128 * GB)
    assert choose_text_encoder_residency("keep", "cuda", **dict(facts, device_limit_bytes=8 * GB)).value == KEEP
    assert choose_text_encoder_residency("free", "cuda", **facts).value == TO_RAM
    assert choose_text_encoder_residency("free", "mps", **facts).value == DROP
    kept = choose_text_encoder_residency("free", "mps", **facts, reloadable=False)
    assert kept.value == KEEP and "cannot be read again" in kept.reason
    assert choose_text_encoder_residency("free", "cuda", **facts, reloadable=False).value == TO_RAM  # RAM keeps them
    none = choose_text_encoder_residency("free", "cuda", **dict(facts, encoder_bytes=0))
    assert none.value == KEEP and none.reason == "the model has no text encoder to free"
    unmeasured = choose_text_encoder_residency("auto", "mps", **dict(facts, job_working_bytes=None,
                                                                     device_limit_bytes=16 * GB))
    assert unmeasured.value == DROP and "working memory is not measured" in unmeasured.reason
    assert choose_text_encoder_residency("auto", "mps", **dict(facts, device_limit_bytes=None)).value == KEEP
    with pytest.raises(DeviceError, match="text encoders: unknown 'sometimes'; use one of auto, keep, free"):
        choose_text_encoder_residency("sometimes", "cpu", **facts)


def test_it_is_a_setting_everywhere_settings_are(tmp_path):
    from tui.cli.main import build_parser
    from tui.client.session import Session
    from tui.config import ConfigError, Settings, load_settings, override, panel_fields
    from tui.locations import Locations

    config = tmp_path / "config.toml"
    config.write_text('text_encoders = "free"\n')
    assert load_settings(config).text_encoders == "free"
    with pytest.raises(ConfigError, match=r"text_encoders = 'never' is not allowed; use one of auto, keep, free"):
        override(Settings(), {"text_encoders": "never"})
    assert "Text encoders" in [f.metadata["label"] for f in panel_fields()]
    assert build_parser().parse_args(["generate", "x", "--text-encoders", "keep"]).text_encoders == "keep"
    session = Session(override(Settings(), {"text_encoders": "free"}), Locations(tmp_path, tmp_path))
    try:
        assert session.engine_options()["text_encoders"] == "free"  # it travels to the server with each job
    finally:
        session.history.close()
