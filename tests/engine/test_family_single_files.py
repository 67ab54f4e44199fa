"""Single files holding a transformer alone (z_image_turbo_bf16.safetensors, flux1-dev.safetensors, ComfyUI's
qwen_image files): recognised by their tensor names, listed with their family, and loaded with their
family's base repository from a local Hub cache (offline), giving the image that repository's own
pipeline gives; a base repository not in the cache is one sentence naming it and the command to fetch it."""

import numpy as np
import pytest

from tests.conftest import hub_settings
from tests.tiny_models import hub_cache_with, z_image_to_original
from tui.engine import Engine, EngineOptions, GenerationRequest, ModelLoadError
from tui.engine.catalog import BASE_ONLY, describe, scan_hub_cache, scan_models_dir
from tui.engine.families import family_from_checkpoint
from tui.engine.single_files import base_repo_id, holds_whole_pipeline

TINY = dict(width=32, height=32, steps=2, seed=3, scheduler="FlowMatch Euler")


def save_tensors(state: dict, path, prefix: str = ""):
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({prefix + key: value.detach().clone().contiguous() for key, value in state.items()}, str(path))
    return path


def pixels(finished) -> np.ndarray:
    return np.asarray(finished[0].image)


def image_of(model: str, prompt: str = "a red fox", **settings):
    engine = Engine(EngineOptions(model=model, preview_max_fps=0))
    engine.load()
    return engine, engine.generate(GenerationRequest(prompt, **{**TINY, **settings}))


@pytest.fixture(scope="module")
def z_image_folder(tmp_path_factory):
    from tests.tiny_models import build_tiny_z_image

    folder = tmp_path_factory.mktemp("z") / "Z-Image-Turbo"
    build_tiny_z_image().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def z_image_folder_pixels(z_image_folder):
    return pixels(image_of(str(z_image_folder), guidance=0.0)[1])


def test_a_z_image_transformer_file_loads_with_the_turbo_repository_from_the_cache(z_image_folder, tmp_path,
                                                                                 z_image_folder_pixels, monkeypatch):
    from safetensors.torch import load_file

    state = load_file(str(z_image_folder / "transformer" / "diffusion_pytorch_model.safetensors"))
    checkpoint = save_tensors(z_image_to_original(state), tmp_path / "models" / "z_image_turbo_bf16.safetensors")
    # Fetched as the error says: all but the transformer's weights.
    cache = hub_cache_with(tmp_path / "hub", z_image_folder, "Tongyi-MAI/Z-Image-Turbo")
    for weights in cache.glob("models--Tongyi-MAI--Z-Image-Turbo/snapshots/*/transformer/*.safetensors"):
        weights.unlink()
    hub_settings(monkeypatch, cache, "1")

    listed = scan_models_dir(tmp_path / "models")
    assert [(e.name, e.family.label) for e in listed] == [("z_image_turbo_bf16.safetensors", "Z-Image Turbo")]
    # Its memory counts the transformer in the file and the other parts of the repository it loads with.
    assert [p.name for p in listed[0].parts] == ["transformer", "text_encoder", "vae"]
    assert listed[0].estimate("bfloat16").weights == describe(str(z_image_folder)).estimate("bfloat16").weights
    assert [e.note for e in scan_hub_cache(cache)] == [BASE_ONLY]
    engine, from_file = image_of(str(checkpoint), guidance=0.0)
    assert type(engine.pipe).__name__ == "ZImagePipeline" and engine.family == "Z-Image Turbo"
    assert np.array_equal(pixels(from_file), z_image_folder_pixels)


def test_without_its_base_repository_a_transformer_file_names_it_and_the_command(z_image_folder, tmp_path,
                                                                                monkeypatch):
    from safetensors.torch import load_file

    state = load_file(str(z_image_folder / "transformer" / "diffusion_pytorch_model.safetensors"))
    checkpoint = save_tensors(z_image_to_original(state), tmp_path / "z_image_turbo_bf16.safetensors",
                              prefix="model.diffusion_model.")
    # Only the configs: the text encoder and VAE weights are missing too.
    hub_settings(monkeypatch, hub_cache_with(tmp_path / "hub", z_image_folder, "Tongyi-MAI/Z-Image-Turbo",
                                             configs_only=True), "1")
    with pytest.raises(ModelLoadError) as caught:
        Engine(EngineOptions(model=str(checkpoint))).load()
    message = str(caught.value)
    assert message == ("model: z_image_turbo_bf16.safetensors holds only the Z-Image transformer, and its text "
                       "encoders, VAE and scheduler come from Tongyi-MAI/Z-Image-Turbo, which the local Hugging "
                       "Face cache does not hold; fetch them once with `hf download Tongyi-MAI/Z-Image-Turbo "
                       "--exclude 'transformer/*.safetensors'`")


def test_another_cached_repository_of_the_family_serves_when_the_base_one_is_missing(z_image_folder, tmp_path,
                                                                                    z_image_folder_pixels,
                                                                                    monkeypatch):
    from safetensors.torch import load_file

    state = load_file(str(z_image_folder / "transformer" / "diffusion_pytorch_model.safetensors"))
    checkpoint = save_tensors(z_image_to_original(state), tmp_path / "my-z-image-merge.safetensors")
    hub_settings(monkeypatch, hub_cache_with(tmp_path / "hub", z_image_folder, "someone/z-image-finetune"), "1")
    engine, from_file = image_of(str(checkpoint), guidance=0.0)
    assert engine.family == "Z-Image"  # no "turbo" in its name: the base model's defaults
    assert np.array_equal(pixels(from_file), z_image_folder_pixels)


def test_a_flux_transformer_file_loads_with_the_dev_repository(tmp_path, monkeypatch):
    # In diffusers' names: diffusers' converter of BFL's layout splits the single blocks at FLUX.1's
    # width, 3072 (convert_flux_transformer_checkpoint_to_diffusers), which a tiny transformer cannot have.
    from tests.tiny_flux import build_tiny_flux

    folder = tmp_path / "FLUX.1-dev"
    pipe = build_tiny_flux()
    pipe.save_pretrained(folder)
    checkpoint = save_tensors(pipe.transformer.state_dict(), tmp_path / "models" / "flux1-krea-dev.safetensors")
    hub_settings(monkeypatch, hub_cache_with(tmp_path / "hub", folder, "black-forest-labs/FLUX.1-dev"), "1")

    assert [e.family.label for e in scan_models_dir(tmp_path / "models")] == ["FLUX.1"]
    engine, from_file = image_of(str(checkpoint), guidance=3.5)
    assert type(engine.pipe).__name__ == "FluxPipeline" and engine.family == "FLUX.1"
    _, from_folder = image_of(str(folder), guidance=3.5)
    assert np.array_equal(pixels(from_file), pixels(from_folder))


def test_a_comfyui_qwen_image_file_loads_with_the_qwen_image_repository(tmp_path, monkeypatch):
    from tests.tiny_qwen_image import save_tiny_qwen_image

    folder = save_tiny_qwen_image("t2i", tmp_path / "Qwen-Image")
    from safetensors.torch import load_file

    state = load_file(str(folder / "transformer" / "diffusion_pytorch_model.safetensors"))
    checkpoint = save_tensors(state, tmp_path / "qwen_image_bf16.safetensors", prefix="model.diffusion_model.")
    hub_settings(monkeypatch, hub_cache_with(tmp_path / "hub", folder, "Qwen/Qwen-Image"), "1")
    engine, from_file = image_of(str(checkpoint), guidance=1.0)
    assert type(engine.pipe).__name__ == "QwenImagePipeline" and engine.family == "Qwen-Image"
    _, from_folder = image_of(str(folder), guidance=1.0)
    assert np.array_equal(pixels(from_file), pixels(from_folder))


def shaped(names, shape=(1,), prefix=""):
    return {prefix + name: shape for name in names}


FLUX_BLOCKS = ("double_blocks.0.img_attn.qkv.weight", "double_blocks.0.img_mod.lin.weight",
               "single_blocks.0.linear1.weight", "img_in.weight")
SD3_BLOCKS = ("joint_blocks.0.context_block.attn.qkv.weight", "x_embedder.proj.weight")


@pytest.mark.parametrize("shapes, name, repo", [
    (shaped(FLUX_BLOCKS + ("guidance_in.in_layer.weight",)), "flux1-dev.safetensors", "black-forest-labs/FLUX.1-dev"),
    (shaped(FLUX_BLOCKS, prefix="model.diffusion_model."), "flux1-schnell.safetensors",
     "black-forest-labs/FLUX.1-schnell"),
    (shaped(SD3_BLOCKS + ("joint_blocks.37.x_block.mlp.fc1.weight",)), "sd3.5_large.safetensors",
     "stabilityai/stable-diffusion-3.5-large"),
    (shaped(SD3_BLOCKS + ("joint_blocks.37.x_block.mlp.fc1.weight",)), "sd3.5_large_turbo.safetensors",
     "stabilityai/stable-diffusion-3.5-large-turbo"),
    (shaped(SD3_BLOCKS + ("joint_blocks.0.x_block.attn2.qkv.weight",)), "sd3.5_medium.safetensors",
     "stabilityai/stable-diffusion-3.5-medium"),
    ({**shaped(("single_stream_modulation.lin.weight", "double_blocks.0.img_attn.qkv.weight")),
      "img_in.weight": (3072, 128)}, "flux-2-klein-4b.safetensors", "black-forest-labs/FLUX.2-klein-4B"),
    ({**shaped(("single_stream_modulation.lin.weight", "double_blocks.0.img_attn.qkv.weight")),
      "img_in.weight": (4096, 128)}, "flux-2-klein-9b.safetensors", "black-forest-labs/FLUX.2-klein-9B"),
    (shaped(("layers.0.adaLN_modulation.0.weight", "cap_embedder.1.weight")), "z_image_turbo_bf16.safetensors",
     "Tongyi-MAI/Z-Image-Turbo"),
])
def test_each_transformer_file_is_told_its_base_repository(shapes, name, repo):
    assert base_repo_id(family_from_checkpoint(shapes, name), shapes) == repo


def test_an_all_in_one_file_keeps_the_whole_checkpoint_path():
    transformer = shaped(SD3_BLOCKS, prefix="model.diffusion_model.")
    assert not holds_whole_pipeline(transformer)
    assert holds_whole_pipeline({**transformer, "first_stage_model.decoder.conv_in.weight": (1,),
                                 "text_encoders.clip_l.transformer.text_model.final_layer_norm.weight": (1,)})
