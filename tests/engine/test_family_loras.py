"""LoRAs of the transformer families (Z-Image, SD3, FLUX.1 and Kontext, FLUX.2 klein, Qwen-Image): told
apart by their layer names (and widths where names are shared) in diffusers', kohya's and ComfyUI's
layouts, loaded through each family's diffusers loader, changing the image and leaving it as before
when dropped, and refused on another family's model in one sentence. The LoRAs are made with peft on
the tiny pipelines' transformers and saved by the pipelines' own save_lora_weights."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.tiny_flux import build_tiny_flux
from tests.tiny_flux2 import build_tiny_flux2_klein
from tests.tiny_models import build_tiny_z_image, save_tiny_kohya_flux_lora, save_tiny_transformer_lora
from tests.tiny_qwen_image import build_tiny_qwen_image
from tests.tiny_sd3 import build_tiny_sd3
from tui.engine import Engine, EngineOptions, Failed, GenerationRequest
from tui.engine.adapters import Networks
from tui.engine.families import FLUX2_KLEIN, FLUX_KONTEXT, family
from tui.engine.networks import LORAS, NetworkError, lora_label, network_files, short_hash

TINY = dict(width=32, height=32, steps=2, seed=3, scheduler="FlowMatch Euler", guidance=0.0)
ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]
# Each tiny model: how it is built, the layers its LoRA adapts (as trainers target them: FLUX.2's fused
# single-block layer and MLPs, Qwen-Image's image and text MLPs), its LoRAs' family and the family of
# the model loaded; the LoRA each model is shown to refuse is the next one's.
MODELS = {
    "z-image": (build_tiny_z_image, ATTENTION, "Z-Image", "Z-Image"),
    "sd3": (build_tiny_sd3, ATTENTION, "SD3", "SD3"),
    "flux": (build_tiny_flux, ATTENTION, "FLUX.1", "FLUX.1"),
    "flux2-klein": (build_tiny_flux2_klein, ATTENTION + ["to_qkv_mlp_proj", "linear_in", "linear_out"], "FLUX.2",
                    "FLUX.2 klein"),
    "qwen-image": (build_tiny_qwen_image, ATTENTION + ["img_mlp.net.2", "txt_mlp.net.2"], "Qwen-Image", "Qwen-Image"),
}
REFUSES = dict(zip(MODELS, [*list(MODELS)[1:], list(MODELS)[0]]))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Each tiny model's folder and its LoRA in the models folder's loras/ (named as the model's folder);
    a second Z-Image LoRA that names its step count; a kohya-layout FLUX.1 LoRA."""
    folder = tmp_path_factory.mktemp("models")
    for name, (build, targets, _, _) in MODELS.items():
        pipe = build()
        pipe.save_pretrained(folder / name)
        save_tiny_transformer_lora(pipe, folder / LORAS / f"{name}.safetensors", targets)
        if name == "z-image":
            save_tiny_transformer_lora(pipe, folder / LORAS / "z-image-detail-4steps.safetensors", targets, seed=8)
        if name == "flux":
            save_tiny_kohya_flux_lora(pipe.transformer, folder / LORAS / "flux-kohya.safetensors")
    return folder


@pytest.fixture(scope="module")
def engines(models):
    loaded = {}

    def engine(name: str) -> Engine:
        if name not in loaded:
            loaded[name] = Engine(EngineOptions(model=str(models / name), models_dir=str(models), preview_max_fps=0))
        return loaded[name]
    return engine


def make(engine, prompt):
    events = []
    results = engine.generate(GenerationRequest(prompt, **TINY), events.append)
    failed = [e for e in events if isinstance(e, Failed)]
    if failed:
        return failed[0]
    return np.asarray(results[0].image).astype(int), results[0].info


def test_each_familys_loras_are_told_by_their_layers(models):
    families = {f.name: f.family for f in network_files(models / LORAS, LORAS)}
    assert families == {"z-image": "Z-Image", "z-image-detail-4steps": "Z-Image", "sd3": "SD3", "flux": "FLUX.1",
                        "flux-kohya": "FLUX.1", "flux2-klein": "FLUX.2", "qwen-image": "Qwen-Image"}


@pytest.mark.parametrize("name", list(MODELS))
def test_a_lora_changes_the_image_and_dropping_it_gives_the_image_back(engines, models, name):
    engine = engines(name)
    base, info = make(engine, "a fox")
    assert "lora_hashes" not in info
    with_lora, info = make(engine, f"a fox <lora:{name}:1>")
    assert np.abs(with_lora - base).mean() > 0.05
    assert info["lora_hashes"] == {name: short_hash(models / LORAS / f"{name}.safetensors", skip_header=True)}
    assert np.array_equal(make(engine, "a fox")[0], base)
    other = REFUSES[name]
    refused = make(engine, f"a fox <lora:{other}:1>")
    assert isinstance(refused, Failed) and refused.message == \
        f"LoRA: {other} is made for {MODELS[other][2]}; the loaded model is {MODELS[name][3]}"
    assert engine.pipe.get_list_adapters() == {"transformer": ["lora1"]}  # refused before loading


def test_weights_several_loras_and_the_step_count_a_lora_names(engines, caplog):
    engine = engines("z-image")
    full, _ = make(engine, "a fox <lora:z-image:1>")
    half, _ = make(engine, "a fox <lora:z-image:0.5>")
    assert not np.array_equal(full, half)
    # A1111's second weight is the UNet's; here it is the transformer's, the LoRA's only part.
    assert np.array_equal(make(engine, "a fox <lora:z-image:0:1>")[0], full)
    with caplog.at_level("INFO", logger="tui.engine"):
        both, info = make(engine, "a fox <lora:z-image:1> <lora:z-image-detail-4steps:0.7>")
    assert set(info["lora_hashes"]) == {"z-image", "z-image-detail-4steps"}
    assert not np.array_equal(both, full)
    assert "LoRA z-image-detail-4steps is made for 4 steps (its name or metadata says so); this job runs 2" in \
        caplog.text


def test_a_kohya_flux_lora_is_converted_by_diffusers_and_used(engines):
    engine = engines("flux")
    base, _ = make(engine, "a fox")
    kohya, info = make(engine, "a fox <lora:flux-kohya:1>")
    assert np.abs(kohya - base).mean() > 0.05 and set(info["lora_hashes"]) == {"flux-kohya"}


def test_kontext_takes_flux1_loras_and_no_unet_lora(models):
    assert lora_label(family(FLUX_KONTEXT)) == "FLUX.1" and lora_label(family(FLUX2_KLEIN)) == "FLUX.2"
    pipe = build_tiny_flux(kontext=True)
    networks = Networks()
    prepared = networks.prepare(pipe, family(FLUX_KONTEXT), str(models), "a fox <lora:flux:0.8>", "", False)
    assert set(prepared.lora_hashes) == {"flux"} and pipe.get_list_adapters() == {"transformer": ["lora1"]}
    _header_file(models / LORAS / "sd15.safetensors", {
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": (4, 768)})
    with pytest.raises(NetworkError) as error:
        networks.prepare(pipe, family(FLUX_KONTEXT), str(models), "a fox <lora:sd15:1>", "", False)
    assert str(error.value) == "LoRA: sd15 is made for SD 1.x; the loaded model is FLUX.1 Kontext"
    (models / LORAS / "sd15.safetensors").unlink()


def test_a_lora_of_no_known_family_is_tried_and_a_loader_error_is_one_sentence(engines, models):
    engine = engines("flux")
    path = _header_file(models / LORAS / "elsewhere.safetensors", _pair("transformer.blocks.0.attn.to_q", 32, 32))
    try:
        failed = make(engine, "a fox <lora:elsewhere:1>")
    finally:
        path.unlink()
    assert isinstance(failed, Failed)
    assert failed.message == "LoRA: elsewhere could not be loaded: the loaded model has none of its layers"
    assert isinstance(make(engine, "a fox <lora:flux:1>"), tuple)  # the engine goes on


def _header_file(path, shapes):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: torch.zeros(shape, dtype=torch.float16) for key, shape in shapes.items()}, str(path))
    return path


def _pair(key: str, width: int, out: int, down="lora_A", up="lora_B") -> dict:
    return {f"{key}.{down}.weight": (4, width), f"{key}.{up}.weight": (out, 4)}


def _kohya(key: str, width: int, out: int) -> dict:
    return _pair(key, width, out, "lora_down", "lora_up")


# Real models' widths: Z-Image 3840, SD3 Medium 1536 and SD 3.5 Large 2432, FLUX.1 and klein 4B 3072 (FLUX.1's
# linear1 3072 x 7, FLUX.2's x 9), Qwen-Image 3072 with 60 blocks.
@pytest.mark.parametrize("shapes,family_label", [
    (_pair("transformer.layers.0.attention.to_q", 3840, 3840), "Z-Image"),
    (_pair("diffusion_model.layers.0.attention.qkv", 3840, 11520), "Z-Image"),
    (_pair("transformer.transformer_blocks.0.attn.to_q", 2432, 2432), "SD3"),
    (_pair("transformer.transformer_blocks.3.attn.add_k_proj", 1536, 1536), "SD3"),
    (_kohya("lora_unet_joint_blocks_0_x_block_attn_qkv", 1536, 4608), "SD3"),
    ({**_kohya("lora_unet_double_blocks_0_img_attn_qkv", 3072, 9216),
      **_kohya("lora_unet_single_blocks_0_linear1", 3072, 21504)}, "FLUX.1"),
    (_pair("diffusion_model.double_blocks.0.img_mlp.0", 3072, 12288), "FLUX.1"),
    (_pair("transformer.single_transformer_blocks.0.attn.to_q", 3072, 3072), "FLUX.1"),
    (_pair("diffusion_model.single_blocks.0.linear1", 3072, 27648), "FLUX.2"),
    (_pair("transformer.single_transformer_blocks.0.attn.to_qkv_mlp_proj", 3072, 27648), "FLUX.2"),
    (_pair("transformer.transformer_blocks.0.img_mlp.net.0.proj", 3072, 12288), "Qwen-Image"),
    (_kohya("lora_unet_transformer_blocks_59_attn_to_q", 3072, 3072), "Qwen-Image"),
    # Names two families share and widths that cannot tell: tried.
    (_pair("diffusion_model.double_blocks.0.img_attn.qkv", 3072, 9216), ""),
    (_pair("transformer.transformer_blocks.0.attn.to_q", 3072, 3072), ""),
    # An SD UNet's blocks hold transformer_blocks.N.attn2 too: its cross-attention width tells it.
    (_pair("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k", 768, 320), "SD 1.x"),
])
def test_real_layouts_are_told_by_names_and_widths(tmp_path, shapes, family_label):
    _header_file(tmp_path / "lora.safetensors", shapes)
    assert network_files(tmp_path, LORAS)[0].family == family_label
