"""FLUX.1 through the engine: tiny random-weight folders (dev-like with a guidance embedding,
schnell-like without, and Kontext) are recognised from their model_index.json and transformer
config, load, generate with previews of their packed latents, run image to image, and single
files are recognised by their tensor names."""

import numpy as np
import pytest
from PIL import Image

from tui.engine import Engine, EngineOptions, Failed, Finished, GenerationRequest, Loaded
from tui.engine.catalog import folder_family
from tui.engine.events import Step
from tui.engine.families import (DISTILLED, FAMILIES, FLUX, FLUX_KONTEXT, NO_GUIDANCE, SD1, family_defaults,
                                 family_from_checkpoint, family_from_configs, family_from_gguf)

TINY = dict(width=32, height=32, steps=2, seed=3, scheduler="FlowMatch Euler")


def _saved(tmp_path_factory, name: str, **kwargs):
    from tests.tiny_flux import build_tiny_flux

    folder = tmp_path_factory.mktemp("models") / name
    build_tiny_flux(**kwargs).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def dev_dir(tmp_path_factory):
    return _saved(tmp_path_factory, "tiny-flux-dev")


@pytest.fixture(scope="module")
def engine(dev_dir):
    engine = Engine(EngineOptions(model=str(dev_dir), preview_max_fps=0))
    engine.load()
    return engine


def _image(finished: list[Finished]) -> np.ndarray:
    return np.asarray(finished[0].image)


def test_flux_folders_are_recognised_with_their_defaults(dev_dir, tmp_path_factory):
    model = folder_family(dev_dir)
    assert (model.base, model.label, model.native_size, model.latent_format) == (FLUX, "FLUX.1", 1024, "flux")
    assert model.guidance.kind == DISTILLED and not model.family.negative_prompt
    assert family_defaults(model) == {"width": 1024, "height": 1024, "steps": 28, "guidance": 3.5,
                                      "scheduler": "FlowMatch Euler"}
    # schnell: told by its transformer config (no guidance embedding) whatever the folder's name...
    schnell = folder_family(dev_dir, "tiny-flux-schnell")  # the config says dev: the name does not decide
    assert schnell.label == "FLUX.1"
    index = {"_class_name": "FluxPipeline"}
    no_embedding = family_from_configs(index, name="my-flux", transformer={"guidance_embeds": False})
    assert no_embedding.label == "FLUX.1 schnell" and no_embedding.guidance.kind == NO_GUIDANCE
    assert family_defaults(no_embedding) == {"width": 1024, "height": 1024, "steps": 4, "guidance": 0.0,
                                             "scheduler": "FlowMatch Euler"}
    # ...and by name where there is no transformer config to say.
    assert family_from_configs(index, name="black-forest-labs/FLUX.1-schnell").label == "FLUX.1 schnell"
    assert family_from_configs({"_class_name": "FluxImg2ImgPipeline"}, name="FLUX.1-Krea-dev").label == "FLUX.1"
    kontext = family_from_configs({"_class_name": "FluxKontextPipeline"}, transformer={"guidance_embeds": True})
    assert kontext.base == FLUX_KONTEXT and kontext.family.pipelines.edit == "FluxKontextPipeline"
    assert family_defaults(kontext)["guidance"] == 2.5 and family_defaults(kontext)["steps"] == 28
    assert family_from_gguf("flux").id == FLUX


def test_flux_generates_with_previews_of_its_packed_latents(engine):
    assert engine.family == "FLUX.1" and engine.family_info.base == FLUX
    events = []
    finished = engine.generate(GenerationRequest("a red fox", guidance=3.5, **TINY), events.append)
    assert len(finished) == 1 and finished[0].image.size == (32, 32), [e for e in events if isinstance(e, Failed)]
    previews = [e.preview for e in events if isinstance(e, Step) and e.preview is not None]
    latent_side = 32 // engine.pipe.vae_scale_factor  # the tiny VAE's factor is 2, real ones' 8
    assert previews and previews[0].size == (latent_side, latent_side)  # a preview pixel per latent
    again = engine.generate(GenerationRequest("a red fox", guidance=3.5, **TINY))
    assert np.array_equal(_image(again), _image(finished))
    # The guidance embedding reads the value: another value, another image.
    guided = engine.generate(GenerationRequest("a red fox", guidance=1.0, **TINY))
    assert not np.array_equal(_image(guided), _image(finished))
    # A model whose VAE gave black images in float16 decodes in float32 from its latent output,
    # which FLUX.1 packs: unpacked, it decodes to the pipeline's own image.
    engine._float32_vae.add(engine._loaded_key)
    try:
        in_float32 = engine.generate(GenerationRequest("a red fox", guidance=3.5, **TINY))
    finally:
        engine._float32_vae.discard(engine._loaded_key)
    assert np.abs(_image(in_float32).astype(int) - _image(finished).astype(int)).max() <= 1


def test_flux_runs_image_to_image_and_refuses_samplers_it_cannot_use(engine, tmp_path):
    source = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(source)
    events = []
    finished = engine.generate(GenerationRequest("a red fox", init_image=str(source), strength=0.5, **TINY),
                               events.append)
    assert len(finished) == 1 and finished[0].image.size == (32, 32), [e for e in events if isinstance(e, Failed)]
    assert type(engine._img2img).__name__ == "FluxImg2ImgPipeline"
    events = []
    engine.generate(GenerationRequest("a red fox", **{**TINY, "scheduler": "DPM++ 2M Karras"}), events.append)
    failed = [e for e in events if isinstance(e, Failed)]
    assert failed and "does not work with FLUX.1 models" in failed[0].message
    assert not any(isinstance(e, Loaded) for e in events)


def test_schnell_and_kontext_load_and_generate(tmp_path_factory):
    schnell_dir = _saved(tmp_path_factory, "tiny-flux", guidance_embeds=False)
    engine = Engine(EngineOptions(model=str(schnell_dir), preview_max_fps=0))
    engine.load()
    assert engine.family == "FLUX.1 schnell" and engine.family_info.guidance.kind == NO_GUIDANCE
    assert engine._guidance(3.5, {"prompt": "a fox"}) == {}  # no guidance_scale: its transformer has no embedding to read it
    finished = engine.generate(GenerationRequest("a red fox", guidance=0.0, **TINY))
    assert len(finished) == 1 and finished[0].image.size == (32, 32)
    # Kontext generates from the prompt alone at the size asked: its pipeline would rescale
    # height and width to max_area (1024**2) unless the engine gives the area.
    kontext_dir = _saved(tmp_path_factory, "tiny-kontext", kontext=True)
    engine.options = EngineOptions(model=str(kontext_dir), preview_max_fps=0)
    engine.load()
    events = []
    finished = engine.generate(GenerationRequest("a red fox", guidance=2.5, **TINY), events.append)
    assert engine.family == "FLUX.1 Kontext" and type(engine.pipe).__name__ == "FluxKontextPipeline"
    assert len(finished) == 1 and finished[0].image.size == (32, 32), [e for e in events if isinstance(e, Failed)]


# Tensor names of FLUX.1's original checkpoints (BFL's files; ComfyUI prefixes them).
FLUX_KEYS = {"double_blocks.0.img_attn.qkv.weight", "double_blocks.0.img_attn.norm.key_norm.scale",
             "single_blocks.0.linear1.weight", "img_in.weight", "final_layer.linear.weight"}
GUIDANCE = {"guidance_in.in_layer.weight", "guidance_in.in_layer.bias"}


def _comfy(keys: set[str]) -> set[str]:
    return {"model.diffusion_model." + key for key in keys} | {"vae.decoder.conv_in.weight"}


def test_flux_single_files_are_recognised_by_their_tensor_names():
    for keys in (FLUX_KEYS | GUIDANCE, _comfy(FLUX_KEYS | GUIDANCE)):
        model = family_from_checkpoint(keys, "flux1-dev.safetensors")
        assert (model.base, model.label, model.native_size) == (FLUX, "FLUX.1", 1024), keys
        # only FLUX.1 claims it: ComfyUI's prefix is no longer read as a UNet's
        assert [f.id for f in FAMILIES if f.recognise.checkpoint and f.recognise.checkpoint(keys)] == [FLUX]
    for keys in (FLUX_KEYS, _comfy(FLUX_KEYS)):  # no guidance embedding: schnell, whatever the name
        assert family_from_checkpoint(keys, "model.safetensors").label == "FLUX.1 schnell"
    # Not FLUX.1: FLUX.2 (same block names, its own modulation), a FLUX LoRA, an SD 1.x UNet.
    flux2 = FLUX_KEYS | GUIDANCE | {"single_stream_modulation.lin.weight"}
    assert FLUX not in [f.id for f in FAMILIES if f.recognise.checkpoint and f.recognise.checkpoint(flux2)]
    assert family_from_checkpoint({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"}) is None
    assert family_from_checkpoint({"single_blocks.0.linear1.weight"}) is None
    assert family_from_checkpoint({"model.diffusion_model.input_blocks.0.0.weight"}).base == SD1
