"""Stable Diffusion 3/3.5 through the engine: a tiny random-weight SD3.5 folder (tokenizers built
here) is recognised from its model_index.json, loads, generates with previews of its 16-channel
latents, runs image to image on the same components, and reads weighted prompts as plain text;
its original single files are told apart from FLUX.1's and SD/SDXL's by their tensor names."""

import re

import numpy as np
import pytest
from PIL import Image

from tui.engine import Engine, EngineOptions, Failed, Finished, GenerationRequest, Loaded
from tui.engine.catalog import folder_family
from tui.engine.events import Step
from tui.engine.families import (FAMILIES, SD1, SD3, family, family_defaults, family_from_checkpoint,
                                 family_from_configs, family_from_gguf)

TINY = dict(width=32, height=32, steps=2, seed=3, scheduler="FlowMatch Euler")


@pytest.fixture(scope="module")
def sd3_dir(tmp_path_factory):
    from tests.tiny_sd3 import build_tiny_sd3

    folder = tmp_path_factory.mktemp("models") / "tiny-sd3.5-large"
    build_tiny_sd3().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def engine(sd3_dir):
    engine = Engine(EngineOptions(model=str(sd3_dir), preview_max_fps=0))
    engine.load()
    return engine


def test_an_sd3_folder_is_recognised_with_its_defaults_and_turbo_by_name(sd3_dir):
    model = folder_family(sd3_dir)
    assert (model.base, model.label, model.native_size, model.latent_format) == (SD3, "SD3", 1024, "sd3")
    assert family_defaults(model) == {"width": 1024, "height": 1024, "steps": 28, "guidance": 3.5,
                                      "scheduler": "FlowMatch Euler"}
    for class_name in ("StableDiffusion3Img2ImgPipeline", "StableDiffusion3InpaintPipeline"):
        assert family_from_configs({"_class_name": class_name}).base == SD3
    turbo = family_from_configs({"_class_name": "StableDiffusion3Pipeline"},
                                name="stabilityai/stable-diffusion-3.5-large-turbo")
    assert turbo.label == "SD3 Turbo" and family_defaults(turbo) == {
        "width": 1024, "height": 1024, "steps": 4, "guidance": 0.0, "scheduler": "FlowMatch Euler"}
    assert family_from_gguf("sd3").id == SD3


def test_sd3_generates_with_previews_of_its_latents(engine):
    assert engine.family == "SD3" and engine.family_info.base == SD3
    events = []
    finished = engine.generate(GenerationRequest("a red fox", guidance=0.0, **TINY), events.append)
    assert len(finished) == 1 and finished[0].image.size == (32, 32), [e for e in events if isinstance(e, Failed)]
    previews = [e.preview for e in events if isinstance(e, Step) and e.preview is not None]
    latent_side = 32 // engine.pipe.vae_scale_factor  # the tiny VAE's factor is 2, real ones' 8
    assert previews and previews[0].size == (latent_side, latent_side)  # a preview pixel per latent
    again = engine.generate(GenerationRequest("a red fox", guidance=0.0, **TINY))
    assert np.array_equal(np.asarray(again[0].image), np.asarray(finished[0].image))
    # Guidance above 1 runs classifier-free guidance with the negative prompt: another image.
    guided = engine.generate(GenerationRequest("a red fox", negative_prompt="blurry", guidance=4.0, **TINY))
    assert not np.array_equal(np.asarray(guided[0].image), np.asarray(finished[0].image))


def test_sd3_reads_weighted_prompts_as_plain_text(engine):
    from tui.engine.conditioning import prompt_arguments

    arguments = prompt_arguments(engine.pipe, family(SD3), "a (red:1.3) fox", "[blurry]")
    assert arguments.kwargs == {"prompt": "a red fox", "negative_prompt": "blurry"}
    assert len(arguments.notes) == 1 and "plain text" in arguments.notes[0]
    long = " ".join(["fox"] * 80)  # past CLIP's 75 tokens: the pipeline's own encoders read it (T5 all of it)
    cut = prompt_arguments(engine.pipe, family(SD3), long, "")
    assert cut.kwargs == {"prompt": long, "negative_prompt": None}
    assert len(cut.notes) == 1 and re.fullmatch(r"prompt: \d+ tokens; SD3's CLIP text encoder reads the first 75, "
                                                r"the rest is cut", cut.notes[0])
    finished = engine.generate(GenerationRequest("a (red:1.3) fox", guidance=0.0, **TINY))
    assert len(finished) == 1 and isinstance(finished[0], Finished)


def test_sd3_runs_image_to_image_and_refuses_samplers_it_cannot_use(engine, tmp_path):
    source = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(source)
    events = []
    finished = engine.generate(GenerationRequest("a red fox", guidance=0.0, init_image=str(source), strength=0.5,
                                                 **TINY), events.append)
    assert len(finished) == 1 and finished[0].image.size == (32, 32), [e for e in events if isinstance(e, Failed)]
    assert type(engine._img2img).__name__ == "StableDiffusion3Img2ImgPipeline"
    events = []
    engine.generate(GenerationRequest("a red fox", **{**TINY, "scheduler": "DPM++ 2M Karras"}), events.append)
    failed = [e for e in events if isinstance(e, Failed)]
    assert failed and "does not work with SD3 models" in failed[0].message
    assert not any(isinstance(e, Loaded) for e in events)


# Tensor names of Stability AI's published files (diffusers' single_file_utils.py CHECKPOINT_KEY_NAMES):
# the MMDiT under "model.diffusion_model.", the VAE under "first_stage_model.", and in the all-in-one
# files (sd3_medium_incl_clips_t5xxlfp8) the three text encoders under "text_encoders.".
MMDIT = ["joint_blocks.0.context_block.attn.qkv.weight", "joint_blocks.0.context_block.adaLN_modulation.1.bias",
         "joint_blocks.0.x_block.attn.qkv.weight", "x_embedder.proj.weight", "pos_embed", "context_embedder.weight",
         "final_layer.linear.weight"]
LARGE = ["joint_blocks.37.x_block.mlp.fc1.weight"]
ENCODERS = ["text_encoders.clip_l.transformer.text_model.embeddings.position_embedding.weight",
            "text_encoders.clip_g.transformer.text_model.embeddings.position_embedding.weight",
            "text_encoders.t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.k.weight"]
VAE = ["first_stage_model.decoder.conv_in.weight"]
FLUX = ["double_blocks.0.img_attn.qkv.weight", "double_blocks.0.img_attn.norm.key_norm.scale",
        "single_blocks.0.linear1.weight", "img_in.weight", "txt_in.weight"]
UNET = ["input_blocks.0.0.weight", "middle_block.1.proj_in.weight"]


def _claims(keys):
    return [f.id for f in FAMILIES if f.recognise.checkpoint and f.recognise.checkpoint(keys)]


@pytest.mark.parametrize("prefix", ["model.diffusion_model.", ""])
def test_sd3_single_files_are_recognised_by_their_tensor_names(prefix):
    transformer = {prefix + key for key in MMDIT}
    for keys, name in [(transformer, "sd3.5_medium.safetensors"),
                       (transformer | {prefix + k for k in LARGE} | set(VAE), "sd3.5_large.safetensors"),
                       (transformer | set(ENCODERS) | set(VAE), "sd3_medium_incl_clips_t5xxlfp8.safetensors")]:
        model = family_from_checkpoint(keys, name)
        assert model is not None and (model.base, model.label, model.native_size) == (SD3, "SD3", 1024), name
        assert _claims(keys) == [SD3]
    turbo = family_from_checkpoint(transformer | {prefix + k for k in LARGE}, "sd3.5_large_turbo.safetensors")
    assert turbo.label == "SD3 Turbo" and turbo.defaults.steps == 4


@pytest.mark.parametrize("prefix", ["model.diffusion_model.", ""])
def test_other_files_are_not_taken_for_sd3(prefix):
    assert SD3 not in _claims({prefix + key for key in FLUX} | set(VAE))  # FLUX.1, bare or ComfyUI's
    assert family_from_checkpoint(set(ENCODERS)) is None  # its text encoders alone
    assert family_from_checkpoint({prefix + "x_embedder.proj.weight"}) is None  # a patch embedding is not a model
    unet = {"model.diffusion_model." + key for key in UNET} | set(VAE)  # SD's UNet
    assert _claims(unet) == [SD1]
