"""PNG metadata: A1111 parameters written and read back, and other tools' text parsed."""

import json

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tui.engine.request import GenerationRequest
from tui.store.images import (MetadataError, format_parameters, parse_parameters, png_text, prompt_slug,
                              request_from_parameters, write_png)
from tui.store.importers import read_request

REQUESTS = [
    GenerationRequest("a red fox", seed=7),
    GenerationRequest("portrait, oil on canvas: dramatic\nsecond line", negative_prompt="blurry, lowres",
                      steps=31, guidance=6.5, width=768, height=512, seed=4294967295, scheduler="Euler a"),
    GenerationRequest('quote " and, commas: colons', negative_prompt="Negative prompt: inside", steps=1,
                      guidance=0.0, width=64, height=2048, seed=0, scheduler="PNDM"),
    GenerationRequest("ünïcödé 🦊 日本語 [bold]markup[/bold] \x1b[31mred", seed=3, scheduler="DPM++ 2M SDE Karras"),
]


@pytest.mark.parametrize("request_", REQUESTS)
def test_parameters_round_trip(request_):
    text = format_parameters(request_, request_.seed, {"model": "demo model (random weights)"})
    assert request_from_parameters(text) == request_


def test_format_matches_a1111_layout():
    request = GenerationRequest("a red fox", negative_prompt="blurry", steps=20, guidance=7.0, seed=7,
                                scheduler="DPM++ 2M Karras")
    assert format_parameters(request, 7, {"model": "v1-5, pruned"}).split("\n") == [
        "a red fox",
        "Negative prompt: blurry",
        'Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 7, Size: 512x512, Model: "v1-5, pruned", '
        "Version: sdtui 0.1.0",
    ]


def test_hand_written_a1111_text_parses():
    text = ("masterpiece, 1girl, (blue hair:1.2), <lora:detail:0.6>\n"
            "Negative prompt: (worst quality:1.4), lowres\n"
            "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5.5, Seed: 3141592653, "
            'Size: 832x1216, Model hash: 1a2b3c4d, Model: someModel_v10, Lora hashes: "detail: 0a1b2c3d", '
            "Version: v1.10.1")
    parsed = parse_parameters(text)
    assert parsed.prompt == "masterpiece, 1girl, (blue hair:1.2), <lora:detail:0.6>"
    assert parsed.negative_prompt == "(worst quality:1.4), lowres"
    assert parsed.settings["Lora hashes"] == "detail: 0a1b2c3d"
    request = request_from_parameters(text)
    assert (request.steps, request.guidance, request.seed) == (28, 5.5, 3141592653)
    assert (request.width, request.height, request.scheduler) == (832, 1216, "DPM++ 2M Karras")


def test_old_a1111_names_and_prompt_only_text():
    assert request_from_parameters("a cat\nSteps: 20, Sampler: PLMS, CFG scale: 7, Seed: 1, Size: 512x512"
                                   ).scheduler == "PNDM"
    only_prompt = request_from_parameters("just a prompt, with: a colon")
    assert only_prompt.prompt == "just a prompt, with: a colon" and only_prompt.seed is None


def test_unusable_parameters_say_why():
    with pytest.raises(MetadataError, match="scheduler: 'Restart'"):
        request_from_parameters("x\nSteps: 20, Sampler: Restart, CFG scale: 7, Seed: 1, Size: 512x512")
    with pytest.raises(MetadataError, match="width"):
        request_from_parameters("x\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 513x512")


def test_written_png_carries_both_chunks_and_reads_back(tmp_path):
    request = REQUESTS[3]
    path = tmp_path / "out.png"
    write_png(path, Image.new("RGB", (64, 64), "red"), request, request.seed, 0, {"model": "demo"})
    chunks = png_text(path)
    assert chunks["parameters"].startswith(request.prompt)
    assert json.loads(chunks["sdtui"])["request"]["prompt"] == request.prompt
    assert read_request(path) == request


def test_a_png_from_another_tool_reads_through_its_parameters(tmp_path):
    meta = PngInfo()
    meta.add_text("parameters", "a dog\nSteps: 12, Sampler: Euler a, CFG scale: 4, Seed: 99, Size: 640x448")
    path = tmp_path / "a1111.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=meta)
    assert read_request(path) == GenerationRequest("a dog", steps=12, guidance=4.0, seed=99, width=640, height=448,
                                                   scheduler="Euler a")


def test_pngs_without_metadata_or_not_png_give_a_clear_message(tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    with pytest.raises(MetadataError, match="no generation parameters found .* ComfyUI"):
        read_request(plain)
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(MetadataError, match="cannot read it as a PNG"):
        read_request(text)


@pytest.mark.parametrize("prompt,expected", [
    ("a red fox", "a-red-fox"),
    ("../../etc/passwd", "etc-passwd"),
    ("/absolute/path", "absolute-path"),
    ("CON", "image-con"),
    ("nul", "image-nul"),
    ("🦊🦊", "image"),
    ("Ünïcödé Fox", "unicode-fox"),
    ("a" * 100, "a" * 48),
])
def test_prompt_slug_is_safe_for_any_prompt(prompt, expected):
    slug = prompt_slug(prompt)
    assert slug == expected or (expected == "image" and slug.startswith("image"))
    assert set(slug) <= set("abcdefghijklmnopqrstuvwxyz0123456789-") and len(slug) <= 48
