"""Importing parameters from PNGs made by other tools, built by hand with each tool's metadata."""

import json

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tui.engine.request import GenerationRequest
from tui.store.images import MetadataError
from tui.store.importers import import_png

COMFY_GRAPH = {
    "3": {"class_type": "KSampler", "inputs": {
        "seed": 8566257, "steps": 25, "cfg": 6.5, "sampler_name": "dpmpp_2m", "scheduler": "karras", "denoise": 1,
        "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"batch_size": 1, "height": 768, "width": 512}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "glass bottle landscape, purple galaxy"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "text, watermark"}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
}
INVOKE_META = {"generation_mode": "txt2img", "positive_prompt": "a castle on a hill", "negative_prompt": "blurry",
               "width": 1024, "height": 1024, "seed": 1234567, "cfg_scale": 5.0, "steps": 30,
               "scheduler": "dpmpp_2m_k", "model": {"name": "sdxl-base"}}


def png_with(tmp_path, name, **chunks):
    meta = PngInfo()
    for key, value in chunks.items():
        meta.add_text(key, value)
    path = tmp_path / name
    Image.new("RGB", (8, 8)).save(path, pnginfo=meta)
    return path


def test_comfyui_prompt_graph(tmp_path):
    imported = import_png(png_with(tmp_path, "comfy.png", prompt=json.dumps(COMFY_GRAPH), workflow="{}"))
    assert imported.source == "ComfyUI"
    assert imported.notes == ["not applied here: model v1-5-pruned-emaonly.safetensors"]
    assert imported.request == GenerationRequest("glass bottle landscape, purple galaxy", "text, watermark", steps=25,
                                                 guidance=6.5, width=512, height=768, seed=8566257,
                                                 scheduler="DPM++ 2M Karras")


def test_comfyui_64_bit_seed_is_kept(tmp_path):
    graph = json.loads(json.dumps(COMFY_GRAPH))
    graph["3"]["inputs"]["seed"] = 2**64 - 1
    imported = import_png(png_with(tmp_path, "comfy.png", prompt=json.dumps(graph)))
    assert imported.request.seed == 2**64 - 1


def test_comfyui_without_a_sampler_says_so(tmp_path):
    graph = {"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}}}
    with pytest.raises(MetadataError, match="no sampler node"):
        import_png(png_with(tmp_path, "comfy.png", prompt=json.dumps(graph)))


def test_invokeai_metadata(tmp_path):
    imported = import_png(png_with(tmp_path, "invoke.png", invokeai_metadata=json.dumps(INVOKE_META)))
    assert imported.source == "InvokeAI"
    assert imported.request == GenerationRequest("a castle on a hill", "blurry", steps=30, guidance=5.0, width=1024,
                                                 height=1024, seed=1234567, scheduler="DPM++ 2M Karras")


def test_a1111_and_own_chunks(tmp_path):
    a1111 = png_with(tmp_path, "a.png", parameters="cat\nSteps: 9, Sampler: Euler, CFG scale: 3, Seed: 5, "
                                                    "Size: 640x640")
    assert import_png(a1111).source == "A1111" and import_png(a1111).request.steps == 9
    own = png_with(tmp_path, "own.png", sdtui=json.dumps({"request": GenerationRequest("dog", seed=1).to_dict(),
                                                          "seed": 3}), parameters="ignored")
    assert import_png(own).request == GenerationRequest("dog", seed=3) and import_png(own).source == "sdtui"


@pytest.mark.parametrize("chunks,words", [
    ({}, "no generation parameters found"),
    ({"prompt": "{not json"}, "not valid JSON"),
    ({"invokeai_metadata": "[1, 2]"}, "not an object"),
    ({"parameters": '{"not": "fooocus"}'}, "JSON from a tool sdtui does not know"),
    ({"invokeai_metadata": json.dumps({"positive_prompt": ""})}, "no prompt or setting"),
])
def test_unusable_metadata_is_one_clear_sentence(tmp_path, chunks, words):
    with pytest.raises(MetadataError) as caught:
        import_png(png_with(tmp_path, "x.png", **chunks))
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_missing_file_and_not_a_png(tmp_path):
    with pytest.raises(MetadataError, match="no such file"):
        import_png(tmp_path / "gone.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(MetadataError, match="cannot read it as an image"):
        import_png(tmp_path / "text.png")


def _graph(**nodes):
    return {key: {"class_type": kind, "inputs": inputs} for key, (kind, inputs) in nodes.items()}


def test_comfyui_custom_sampler_through_controlnet_to_a_string_node(tmp_path):
    """SamplerCustomAdvanced keeps its settings in other nodes (guider, noise, sampler, sigmas); the
    prompt reaches the guider through a ControlNet node, and the text comes from a string node.
    A KSamplerSelect node, which has no prompt, must not be taken for the sampler."""
    graph = _graph(
        n1=("CheckpointLoaderSimple", {"ckpt_name": "sd_xl_base_1.0.safetensors"}),
        n2=("PrimitiveString", {"value": "a lighthouse at dusk"}),
        n3=("CLIPTextEncode", {"clip": ["n1", 1], "text": ["n2", 0]}),
        n4=("CLIPTextEncode", {"clip": ["n1", 1], "text": "fog"}),
        n5=("ControlNetApplyAdvanced", {"positive": ["n3", 0], "negative": ["n4", 0], "control_net": ["n9", 0],
                                        "image": ["n10", 0], "strength": 0.8}),
        n6=("CFGGuider", {"model": ["n1", 0], "positive": ["n5", 0], "negative": ["n5", 1], "cfg": 4.5}),
        n7=("KSamplerSelect", {"sampler_name": "euler_ancestral"}),
        n8=("BasicScheduler", {"model": ["n1", 0], "scheduler": "normal", "steps": 12, "denoise": 1.0}),
        n9=("ControlNetLoader", {"control_net_name": "canny.safetensors"}),
        n10=("LoadImage", {"image": "edges.png"}),
        n11=("RandomNoise", {"noise_seed": 2**64 - 5}),
        n12=("EmptyLatentImage", {"width": 832, "height": 1216, "batch_size": 1}),
        n13=("SamplerCustomAdvanced", {"noise": ["n11", 0], "guider": ["n6", 0], "sampler": ["n7", 0],
                                       "sigmas": ["n8", 0], "latent_image": ["n12", 0]}),
        n14=("VAEDecode", {"samples": ["n13", 0], "vae": ["n1", 2]}),
        n15=("SaveImage", {"images": ["n14", 0], "filename_prefix": "ComfyUI"}),
    )
    imported = import_png(png_with(tmp_path, "custom.png", prompt=json.dumps(graph)))
    assert imported.values == {"prompt": "a lighthouse at dusk", "negative_prompt": "fog", "steps": 12,
                               "guidance": 4.5, "seed": 2**64 - 5, "width": 832, "height": 1216,
                               "scheduler": "Euler a"}
    assert imported.notes == ["not applied here: model sd_xl_base_1.0.safetensors"]


def test_comfyui_sdxl_encoder_and_an_unmapped_sampler(tmp_path):
    graph = _graph(
        a=("CLIPTextEncodeSDXL", {"clip": ["c", 1], "text_g": "a red barn", "text_l": "a red barn",
                                  "width": 1024, "height": 1024}),
        b=("CLIPTextEncodeSDXL", {"clip": ["c", 1], "text_g": "", "text_l": ""}),
        c=("CheckpointLoaderSimple", {"ckpt_name": "sdxl.safetensors"}),
        d=("KSampler", {"seed": 5, "steps": 25, "cfg": 6, "sampler_name": "dpmpp_2s_ancestral", "scheduler": "karras",
                        "denoise": 1, "positive": ["a", 0], "negative": ["b", 0], "latent_image": ["e", 0],
                        "model": ["c", 0]}),
        e=("EmptyLatentImage", {"width": 1024, "height": 1024, "batch_size": 1}),
        f=("SaveImage", {"images": ["g", 0]}),
        g=("VAEDecode", {"samples": ["d", 0], "vae": ["c", 2]}),
    )
    imported = import_png(png_with(tmp_path, "sdxl.png", prompt=json.dumps(graph)))
    assert imported.values["prompt"] == "a red barn" and imported.values["negative_prompt"] == ""
    assert "scheduler" not in imported.values
    assert imported.notes[0] == ("sampler dpmpp_2s_ancestral with the karras schedule has no exact equivalent "
                                 "in sdtui; the current scheduler is kept")


@pytest.mark.parametrize("name,expected", [
    ("euler", "Euler"), ("euler_k", "Euler Karras"), ("euler_a", "Euler a"), ("heun_k", "Heun Karras"),
    ("dpmpp_2m", "DPM++ 2M"), ("dpmpp_2m_k", "DPM++ 2M Karras"), ("dpmpp_2m_sde", "DPM++ 2M SDE"),
    ("dpmpp_2m_sde_k", "DPM++ 2M SDE Karras"), ("lms_k", "LMS Karras"), ("lcm", "LCM"), ("unipc", "UniPC"),
    ("ddim", "DDIM"), ("pndm", "PNDM"),
    ("kdpm_2", None), ("dpmpp_sde_k", None), ("dpmpp_3m", None), ("deis", None), ("tcd", None), ("unipc_k", None),
])
def test_invokeai_scheduler_names(tmp_path, name, expected):
    imported = import_png(png_with(tmp_path, "i.png", invokeai_metadata=json.dumps({**INVOKE_META,
                                                                                   "scheduler": name})))
    assert imported.values.get("scheduler") == expected
    assert imported.values["steps"] == 30  # the other fields are taken either way


def test_invokeai_bad_size_keeps_the_other_fields(tmp_path):
    imported = import_png(png_with(tmp_path, "i.png", invokeai_metadata=json.dumps({**INVOKE_META, "width": 1001})))
    assert "width" not in imported.values and imported.values["prompt"] == "a castle on a hill"
    assert imported.notes[0] == "width: 1001 is not allowed; use a multiple of 8 from 64 to 2048; the current size is kept"


FORGE_FLUX = ("a red fox in the snow\nSteps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, "
              "Distilled CFG Scale: 3.5, Seed: 2357, Size: 896x1152, Model hash: bea01d51bd, "
              "Model: flux1-dev-bnb-nf4-v2, Version: f2.0.1v1.10.1-previous-313-g8a042934, Module 1: ae, "
              "Module 2: clip_l, Module 3: t5xxl_fp16")


def test_forge_flux_distilled_cfg_is_the_guidance(tmp_path):
    """Forge writes FLUX's distilled guidance as "Distilled CFG Scale" beside "CFG scale: 1"."""
    imported = import_png(png_with(tmp_path, "forge.png", parameters=FORGE_FLUX))
    assert imported.source == "A1111"
    assert imported.values == {"prompt": "a red fox in the snow", "negative_prompt": "", "steps": 20, "seed": 2357,
                               "guidance": 3.5, "width": 896, "height": 1152, "scheduler": "FlowMatch Euler"}
    assert imported.notes == ["guidance is FLUX's distilled guidance (Distilled CFG Scale 3.5)",
                              "not applied here: model flux1-dev-bnb-nf4-v2"]


def test_forge_flux_with_a_real_cfg_says_it_is_not_used(tmp_path):
    text = FORGE_FLUX.replace("CFG scale: 1,", "CFG scale: 2.5,")
    text = text.replace("Schedule type: Simple", "Schedule type: Beta")
    imported = import_png(png_with(tmp_path, "forge.png", parameters=text))
    assert imported.values["guidance"] == 3.5 and "scheduler" not in imported.values
    assert imported.notes[:2] == [
        "guidance is FLUX's distilled guidance (Distilled CFG Scale 3.5); its CFG scale 2.5 is not used here",
        "sampler Euler with the Beta schedule has no exact equivalent in sdtui; the current scheduler is kept"]


def test_forge_shift_is_taken_and_the_cfg_is_the_guidance(tmp_path):
    text = ("a lighthouse\nNegative prompt: blurry\nSteps: 28, Sampler: Euler, Schedule type: SGM Uniform, "
            "CFG scale: 4.5, Shift: 3, Seed: 7, Size: 1024x1024, Model: sd3.5_large")
    imported = import_png(png_with(tmp_path, "forge.png", parameters=text))
    assert imported.values == {"prompt": "a lighthouse", "negative_prompt": "blurry", "steps": 28, "seed": 7,
                               "guidance": 4.5, "width": 1024, "height": 1024, "scheduler": "FlowMatch Euler",
                               "shift": 3.0}
    assert imported.notes == ["guidance is the CFG scale (4.5)", "not applied here: model sd3.5_large"]


def test_a1111_euler_without_forge_fields_stays_euler(tmp_path):
    text = "a cat\nSteps: 20, Sampler: Euler, Schedule type: Automatic, CFG scale: 7, Seed: 1, Size: 512x512"
    assert import_png(png_with(tmp_path, "a.png", parameters=text)).values["scheduler"] == "Euler"
