"""Qwen-Image through the engine: tiny random-weight Qwen-Image and Qwen-Image-Edit folders (tokenizer
built here) are recognised from their model_index.json, load, and generate: text to image with
previews of the packed, video-shaped Wan 2.1 latents and true CFG (an empty negative prompt sent as
" "), image to image, and edits of an init image by instruction; a job for an editing model that is
not an edit fails in one sentence. Single files of its transformer are told by their tensor names."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.tiny_qwen_image import qwen_image_checkpoint_keys, save_tiny_qwen_image, shrink_edit_reference_sizes
from tui.engine import Engine, EngineOptions, Failed, GenerationRequest, Loaded
from tui.engine.catalog import folder_family
from tui.engine.events import Started, Step
from tui.engine.families import (QWEN_IMAGE, QWEN_IMAGE_EDIT, QWEN_IMAGE_EDIT_PLUS, family_defaults,
                                 family_from_checkpoint, family_from_configs, family_from_gguf)

TINY = dict(width=32, height=32, steps=2, seed=3, scheduler="FlowMatch Euler")


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    return save_tiny_qwen_image("t2i", tmp_path_factory.mktemp("models") / "tiny-qwen-image")


@pytest.fixture(scope="module")
def engine(qwen_dir):
    engine = Engine(EngineOptions(model=str(qwen_dir), preview_max_fps=0))
    engine.load()
    return engine


@pytest.fixture
def red(tmp_path):
    source = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(source)
    return str(source)


def failures(events):
    return [e for e in events if isinstance(e, Failed)]


def test_a_qwen_image_folder_is_recognised_with_its_defaults(qwen_dir):
    model = folder_family(qwen_dir)
    assert (model.base, model.label, model.native_size, model.latent_format) == (QWEN_IMAGE, "Qwen-Image", 1328,
                                                                               "wan21")
    assert family_defaults(model) == {"width": 1328, "height": 1328, "steps": 50, "guidance": 4.0,
                                      "scheduler": "FlowMatch Euler"}
    index = json.loads((qwen_dir / "model_index.json").read_text())
    lightning = family_from_configs(index, name="lightx2v/Qwen-Image-Lightning")
    assert lightning.label == "Qwen-Image Lightning"
    assert family_defaults(lightning) == {"width": 1328, "height": 1328, "steps": 8, "guidance": 1.0,
                                          "scheduler": "FlowMatch Euler"}
    for class_name, family_id in (("QwenImageImg2ImgPipeline", QWEN_IMAGE), ("QwenImageEditPipeline", QWEN_IMAGE_EDIT),
                                  ("QwenImageEditPlusPipeline", QWEN_IMAGE_EDIT_PLUS)):
        assert family_from_configs({**index, "_class_name": class_name}).base == family_id
    assert family_from_gguf("qwen_image").id == QWEN_IMAGE


def test_qwen_image_generates_with_previews_and_true_cfg(engine):
    assert engine.family == "Qwen-Image" and engine.family_info.base == QWEN_IMAGE
    events = []
    finished = engine.generate(GenerationRequest("a red fox", guidance=1.0, **TINY), events.append)
    assert len(finished) == 1 and finished[0].image.size == (32, 32), failures(events)
    previews = [e.preview for e in events if isinstance(e, Step) and e.preview is not None]
    latent_side = 32 // engine.pipe.vae_scale_factor  # the tiny VAE's factor is 4, the real one's 8
    assert previews and previews[0].size == (latent_side, latent_side)  # a preview pixel per latent
    again = engine.generate(GenerationRequest("a red fox", guidance=1.0, **TINY))
    assert np.array_equal(np.asarray(again[0].image), np.asarray(finished[0].image))
    # Guidance above 1 runs true CFG even with no negative prompt (" " is sent): another image.
    guided = engine.generate(GenerationRequest("a red fox", guidance=4.0, **TINY))
    assert not np.array_equal(np.asarray(guided[0].image), np.asarray(finished[0].image))


def test_qwen_image_runs_image_to_image_and_refuses_samplers_it_cannot_use(engine, red):
    events = []
    finished = engine.generate(GenerationRequest("a red fox", guidance=1.0, init_image=red, strength=0.5, **TINY),
                               events.append)
    assert len(finished) == 1 and finished[0].image.size == (32, 32), failures(events)
    events = []
    engine.generate(GenerationRequest("a red fox", **{**TINY, "scheduler": "DPM++ 2M Karras"}), events.append)
    failed = failures(events)
    assert failed and "does not work with Qwen-Image models" in failed[0].message
    assert not any(isinstance(e, Loaded) for e in events)


def test_an_edit_model_loads_edits_an_init_image_and_needs_one(tmp_path_factory, red):
    shrink_edit_reference_sizes()
    folder = save_tiny_qwen_image("edit", tmp_path_factory.mktemp("models") / "tiny-qwen-image-edit")
    assert folder_family(folder).label == "Qwen-Image-Edit"
    engine = Engine(EngineOptions(model=str(folder), preview_max_fps=0))
    engine.load()  # its Qwen2VLProcessor loads without torchvision
    assert type(engine.pipe).__name__ == "QwenImageEditPipeline" and engine.family_info.base == QWEN_IMAGE_EDIT
    events = []
    finished = engine.generate(GenerationRequest("make it blue", guidance=4.0, init_image=red, edit=True, **TINY),
                               events.append)
    assert len(finished) == 1 and finished[0].image.size == (32, 32), failures(events)
    assert next(e for e in events if isinstance(e, Started)).steps == TINY["steps"]  # an edit runs every step
    for request in (GenerationRequest("make it blue", **TINY),
                    GenerationRequest("make it blue", init_image=red, strength=0.5, **TINY)):
        events = []
        assert engine.generate(request, events.append) == []
        assert [e.message for e in failures(events)] == [
            "Qwen-Image-Edit models only edit a picture by instruction: give the picture as the init image of an edit"]


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_single_files_of_its_transformer_are_told_by_their_tensor_names(prefix):
    keys = qwen_image_checkpoint_keys(prefix)
    model = family_from_checkpoint(keys, "qwen_image_fp8_e4m3fn.safetensors")
    assert model is not None and (model.base, model.native_size) == (QWEN_IMAGE, 1328)
    assert family_from_checkpoint(keys, "Qwen-Image-Lightning-8steps.safetensors").label == "Qwen-Image Lightning"
    # FLUX.1 in its original names shares img_in and txt_in; in diffusers' names it has transformer_blocks.
    flux = {prefix + k for k in ("img_in.weight", "txt_in.weight", "double_blocks.0.img_attn.qkv.weight",
                                 "double_blocks.0.img_mod.lin.weight", "single_blocks.0.linear1.weight")}
    flux_diffusers = {"x_embedder.weight", "context_embedder.weight", "transformer_blocks.0.norm1.linear.weight",
                      "single_transformer_blocks.0.norm.linear.weight"}
    for other in (flux, flux_diffusers, keys - {prefix + "txt_norm.weight"}):
        found = family_from_checkpoint(other)
        assert found is None or found.base != QWEN_IMAGE, other
