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
    assert imported.source == "ComfyUI" and imported.notes == []
    assert imported.request == GenerationRequest("glass bottle landscape, purple galaxy", "text, watermark", steps=25,
                                                 guidance=6.5, width=512, height=768, seed=8566257,
                                                 scheduler="DPM++ 2M Karras")


def test_comfyui_64_bit_seed_is_dropped_with_a_note(tmp_path):
    graph = json.loads(json.dumps(COMFY_GRAPH))
    graph["3"]["inputs"]["seed"] = 156680208700286
    imported = import_png(png_with(tmp_path, "comfy.png", prompt=json.dumps(graph)))
    assert imported.request.seed is None and "156680208700286" in imported.notes[0]


def test_comfyui_without_a_sampler_says_so(tmp_path):
    graph = {"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}}}
    with pytest.raises(MetadataError, match="no KSampler node"):
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
    ({"invokeai_metadata": json.dumps({**INVOKE_META, "width": 1001})}, "width"),
    ({"invokeai_metadata": json.dumps({**INVOKE_META, "positive_prompt": ""})}, "prompt"),
])
def test_unusable_metadata_is_one_clear_sentence(tmp_path, chunks, words):
    with pytest.raises(MetadataError) as caught:
        import_png(png_with(tmp_path, "x.png", **chunks))
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_missing_file_and_not_a_png(tmp_path):
    with pytest.raises(MetadataError, match="no such file"):
        import_png(tmp_path / "gone.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(MetadataError, match="cannot read it as a PNG"):
        import_png(tmp_path / "text.png")
