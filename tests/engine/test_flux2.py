"""FLUX.2 through the engine: tiny random-weight klein (base and distilled) and [dev] folders are
recognised from their model_index.json with their defaults, load, generate with previews of their
packed 128-channel latents (read with ComfyUI's Flux2 factors), and single files are told from their
tensor names (never a FLUX.1 file)."""

import numpy as np
import pytest
from PIL import Image

from tui.engine import Engine, EngineOptions, Failed, GenerationRequest, Loaded
from tui.engine.catalog import folder_family
from tui.engine.events import Step
from tui.engine.families import (FAMILIES, FLUX2, FLUX2_KLEIN, FLUX2_KLEIN_BASE, family, family_defaults,
                                 family_from_checkpoint)

TINY = dict(width=32, height=32, steps=2, seed=3, scheduler="FlowMatch Euler")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from tests.tiny_flux2 import build_tiny_flux2_dev, build_tiny_flux2_klein

    root = tmp_path_factory.mktemp("models")
    klein = build_tiny_flux2_klein(is_distilled=False)
    klein.save_pretrained(root / "tiny-flux2-klein-base")
    klein.register_to_config(is_distilled=True)  # the same weights as klein-4B's repository says it
    klein.save_pretrained(root / "tiny-flux2-klein")
    build_tiny_flux2_dev().save_pretrained(root / "tiny-flux2-dev")
    return {name: root / f"tiny-flux2-{name}" for name in ("klein-base", "klein", "dev")}


def _engine(folder):
    engine = Engine(EngineOptions(model=str(folder), preview_max_fps=0))
    engine.load()
    return engine


@pytest.fixture(scope="module")
def base(folders):
    return _engine(folders["klein-base"])


def _pixels(finished):
    return np.asarray(finished[0].image)


def test_flux2_folders_are_recognised_with_their_defaults(folders):
    expected = {"klein-base": (FLUX2_KLEIN_BASE, "FLUX.2 klein Base", 50, 4.0),
                "klein": (FLUX2_KLEIN, "FLUX.2 klein", 4, 0.0), "dev": (FLUX2, "FLUX.2", 50, 4.0)}
    for name, (base, label, steps, guidance) in expected.items():
        model = folder_family(folders[name])
        assert (model.base, model.label, model.native_size, model.latent_format) == (base, label, 1024, "flux2")
        assert family_defaults(model) == {"width": 1024, "height": 1024, "steps": steps, "guidance": guidance,
                                          "scheduler": "FlowMatch Euler"}, name
    # Each folder is claimed by one family only, whatever the registry's order (klein by is_distilled).
    for index, expected_id in (({"_class_name": "Flux2KleinPipeline", "is_distilled": True}, FLUX2_KLEIN),
                               ({"_class_name": "Flux2KleinPipeline", "is_distilled": False}, FLUX2_KLEIN_BASE),
                               ({"_class_name": "Flux2KleinPipeline"}, FLUX2_KLEIN_BASE),  # the default
                               ({"_class_name": "Flux2Pipeline"}, FLUX2)):
        assert [f.id for f in FAMILIES if index["_class_name"] in f.recognise.pipeline_classes
                and (f.recognise.folder is None or f.recognise.folder(index, {}))] == [expected_id], index
    assert not any(f.recognise.folder({"_class_name": "StableDiffusionPipeline", "is_distilled": True}, {})
                   for f in FAMILIES if f.id in (FLUX2_KLEIN, FLUX2_KLEIN_BASE))
    klein = family(FLUX2_KLEIN)
    assert klein.pipelines.edit == klein.pipelines.text_to_image == "Flux2KleinPipeline"
    assert not klein.negative_prompt and klein.encoders[0].kind == "qwen3"
    assert klein.guidance.kind == "none" and family(FLUX2_KLEIN_BASE).guidance.kind == "cfg"
    assert family(FLUX2).encoders[0].kind == "mistral" and family(FLUX2).guidance.kind == "distilled"


def test_klein_base_generates_with_previews_and_real_guidance(base):
    assert base.family == "FLUX.2 klein Base" and base.family_info.base == FLUX2_KLEIN_BASE
    events = []
    finished = base.generate(GenerationRequest("a red fox", guidance=1.0, **TINY), events.append)
    assert len(finished) == 1 and finished[0].image.size == (32, 32), [e for e in events if isinstance(e, Failed)]
    previews = [e.preview for e in events if isinstance(e, Step) and e.preview is not None]
    latent_side = 32 // base.pipe.vae_scale_factor  # the tiny VAE's factor is 2, real ones' 8
    assert previews and previews[0].size == (latent_side, latent_side)  # a preview pixel per VAE latent
    again = base.generate(GenerationRequest("a red fox", guidance=1.0, **TINY))
    assert np.array_equal(_pixels(again), _pixels(finished))
    # Above 1 the base model runs classifier-free guidance against the empty prompt: another image.
    # The pipeline takes no negative prompt: one given is not passed (and does not fail the job).
    guided = base.generate(GenerationRequest("a red fox", negative_prompt="blurry", guidance=4.0, **TINY))
    assert guided and not np.array_equal(_pixels(guided), _pixels(finished))


def test_klein_base_edits_by_instruction_and_refuses_img2img_and_samplers_it_cannot_use(base, tmp_path):
    source = tmp_path / "red.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(source)  # FLUX.2 takes references of 64 px a side or more
    events = []
    edited = base.generate(GenerationRequest("make it blue", init_image=str(source), edit=True,
                                             **{**TINY, "width": 64, "height": 64}), events.append)
    assert edited and edited[0].image.size == (64, 64), [e for e in events if isinstance(e, Failed)]
    events = []
    base.generate(GenerationRequest("a red fox", init_image=str(source), strength=0.5, **TINY), events.append)
    failed = [e for e in events if isinstance(e, Failed)]
    assert failed and "FLUX.2 klein Base models have no image-to-image pipeline" in failed[0].message
    events = []
    base.generate(GenerationRequest("a red fox", **{**TINY, "scheduler": "DPM++ 2M Karras"}), events.append)
    failed = [e for e in events if isinstance(e, Failed)]
    assert failed and "does not work with FLUX.2 klein Base models" in failed[0].message
    assert not any(isinstance(e, Loaded) for e in events)


def test_dev_generates_with_its_guidance_embedded(folders):
    dev = _engine(folders["dev"])
    assert dev.family == "FLUX.2" and dev.family_info.base == FLUX2
    events = []
    low = dev.generate(GenerationRequest("a red fox", guidance=1.0, **TINY), events.append)
    assert low and low[0].image.size == (32, 32), [e for e in events if isinstance(e, Failed)]
    assert any(isinstance(e, Step) and e.preview is not None for e in events)
    assert not np.array_equal(_pixels(dev.generate(GenerationRequest("a red fox", guidance=4.0, **TINY))),
                              _pixels(low))  # the guidance embedding changes the image


def test_previews_read_flux2_latents_as_comfyui_does():
    """spatial() unpacks Flux2's packed latents to the 32-channel grid that ComfyUI's Flux2 factors read
    (its latent_rgb_factors_reshape of the (b, 128, h, w) patchified latent)."""
    import torch
    from diffusers import Flux2KleinPipeline

    from tui.engine.preview import LATENT_RGB, LatentPreviewer

    patchified = torch.randn(1, 128, 3, 5)  # 48x80 pixels at 16 per token
    packed = Flux2KleinPipeline._pack_latents(patchified)
    assert packed.shape == (1, 15, 128)
    comfy = patchified.reshape(1, 32, 2, 2, 3, 5).permute(0, 1, 4, 2, 5, 3).reshape(1, 32, 6, 10)
    assert torch.equal(Flux2KleinPipeline._unpatchify_latents(patchified), comfy)
    factors, bias = torch.tensor(LATENT_RGB["flux2"]["factors"]), torch.tensor(LATENT_RGB["flux2"]["bias"])
    rgb = ((torch.einsum("chw,cr->hwr", comfy[0], factors) + bias + 1.0) * 127.5).clamp(0, 255).to(torch.uint8)
    assert np.array_equal(np.asarray(LatentPreviewer("flux2").to_image(packed, 80, 48)), rgb.numpy())


# Tensor names of the published original files (BFL's layout, as single_file_utils.py converts them).
FLUX2_KEYS = {"img_in.weight", "txt_in.weight", "time_in.in_layer.weight", "time_in.out_layer.weight",
              "double_stream_modulation_img.lin.weight", "double_stream_modulation_txt.lin.weight",
              "single_stream_modulation.lin.weight", "double_blocks.0.img_attn.qkv.weight",
              "double_blocks.0.img_attn.norm.key_norm.scale", "single_blocks.0.linear1.weight",
              "final_layer.adaLN_modulation.1.weight", "final_layer.linear.weight"}
DEV_KEYS = FLUX2_KEYS | {"guidance_in.in_layer.weight", "guidance_in.out_layer.weight"}
FLUX1_KEYS = {"img_in.weight", "img_in.bias", "txt_in.weight", "time_in.in_layer.weight", "vector_in.in_layer.weight",
              "guidance_in.in_layer.weight", "double_blocks.0.img_mod.lin.weight", "double_blocks.0.txt_mod.lin.weight",
              "double_blocks.0.img_attn.qkv.weight", "double_blocks.0.img_attn.norm.key_norm.scale",
              "single_blocks.0.modulation.lin.weight", "single_blocks.0.linear1.weight",
              "final_layer.adaLN_modulation.1.weight", "final_layer.linear.weight"}


def _comfy(keys):
    return {"model.diffusion_model." + key for key in keys}


def _claims(keys):
    return [f.id for f in FAMILIES if f.recognise.checkpoint and f.recognise.checkpoint(keys)]


def test_flux2_single_files_are_told_from_their_tensor_names():
    for keys in (DEV_KEYS, _comfy(DEV_KEYS)):
        assert _claims(keys) == [FLUX2] and family_from_checkpoint(keys, "flux2-dev.safetensors").base == FLUX2
    for keys in (FLUX2_KEYS, _comfy(FLUX2_KEYS)):
        assert _claims(keys) == [FLUX2_KLEIN]
        model = family_from_checkpoint(keys, "flux-2-klein-4b.safetensors")
        assert (model.base, model.native_size, model.latent_format) == (FLUX2_KLEIN, 1024, "flux2")
    # FLUX.1 shares double_blocks.0.img_attn.qkv, guidance_in and the ComfyUI prefix: never FLUX.2 (nor SD).
    flux2_ids = {FLUX2, FLUX2_KLEIN, FLUX2_KLEIN_BASE}
    for keys in (FLUX1_KEYS, _comfy(FLUX1_KEYS), FLUX1_KEYS | {"single_stream_modulation.lin.weight"}):
        assert not set(_claims(keys)) & (flux2_ids | {"sd1", "sd2", "sdxl"}), keys
    assert not _claims({"single_stream_modulation.lin.weight.lora_down.weight"})  # a LoRA for it
