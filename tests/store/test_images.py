"""PNG metadata: A1111 parameters written and read back, and other tools' text parsed."""

import json

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tui.engine.request import GenerationRequest
from tui.engine.schedulers import scheduler_from_a1111
from tui.store.importers.a1111 import a1111_import
from tui.store.images import MetadataError, format_parameters, parse_parameters, png_text, prompt_slug, write_png
from tui.store.importers import read_request, request_from_parameters

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
        'Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 7, Size: 512x512, '
        'Model: "v1-5, pruned", Version: sdtui 0.1.0',
    ]


def test_distilled_guidance_and_shift_are_written_as_forge_writes_them():
    request = GenerationRequest("a red fox", steps=28, guidance=3.5, seed=7, scheduler="FlowMatch Euler", shift=3.0)
    line = format_parameters(request, 7, {"model": "flux1-dev", "guidance_kind": "distilled"}).split("\n")[-1]
    assert "CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 7" in line and ", Shift: 3," in line
    assert request_from_parameters(format_parameters(request, 7, {"guidance_kind": "distilled"})) == request
    sd = format_parameters(GenerationRequest("a red fox", guidance=5.0, seed=7), 7, {"guidance_kind": "cfg"})
    assert "CFG scale: 5, Seed: 7" in sd and "Distilled" not in sd and "Shift" not in sd


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


def test_an_unknown_sampler_or_bad_size_keeps_the_rest_and_says_so():
    imported = a1111_import("x\nSteps: 20, Sampler: Restart, CFG scale: 7, Seed: 1, Size: 513x512")
    assert imported.values == {"prompt": "x", "negative_prompt": "", "steps": 20, "guidance": 7.0, "seed": 1}
    assert imported.notes == ["width: 513 is not allowed; use a multiple of 8 from 64 to 2048; the current size is kept",
                              "sampler Restart has no exact equivalent in sdtui; the current scheduler is kept"]


@pytest.mark.parametrize("sampler,schedule,version,expected", [
    ("DPM++ 2M", None, None, "DPM++ 2M"),  # before 1.9 a plain name meant the plain schedule
    ("DPM++ 2M", None, "v1.10.1", "DPM++ 2M Karras"),  # 1.9+: the sampler's default, Karras
    ("DPM++ 2M", "Automatic", "f2.0.1v1.10.1-previous-313", "DPM++ 2M Karras"),  # Forge
    ("DPM++ 2M", "Uniform", "v1.10.1", "DPM++ 2M"),
    ("DPM++ 2M Karras", None, "v1.6.0", "DPM++ 2M Karras"),
    ("DPM++ 2M SDE", None, "v1.10.1", "DPM++ 2M SDE Exponential"),
    ("Euler", "Karras", "v1.10.1", "Euler Karras"),
    ("Euler a", "Automatic", "v1.10.1", "Euler a"),
    ("LCM", None, "v1.10.1", "LCM"),
    ("k_euler_ancestral", None, None, "Euler a"),
    ("Euler a", "Karras", "v1.10.1", None),  # diffusers' Euler a has no Karras sigmas
    ("DPM++ SDE", "Karras", "v1.10.1", None),
    ("DPM2 a", None, "v1.10.1", None),
])
def test_a1111_sampler_and_schedule_type(sampler, schedule, version, expected):
    spec = scheduler_from_a1111(sampler, schedule, version)
    assert (spec.name if spec else None) == expected


A1111_1_10_SAMPLERS = ["DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE",
                       "Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart",
                       "DDIM", "DDIM CFG++", "PLMS", "UniPC", "LCM"]


@pytest.mark.parametrize("sampler", A1111_1_10_SAMPLERS)
def test_every_a1111_sampler_imports_the_rest_of_the_settings(sampler):
    imported = a1111_import(f"a fox\nSteps: 9, Sampler: {sampler}, Schedule type: Automatic, CFG scale: 4, "
                            "Seed: 12, Size: 640x512, Version: v1.10.1")
    assert {k: imported.values[k] for k in ("prompt", "steps", "guidance", "seed", "width", "height")} == {
        "prompt": "a fox", "steps": 9, "guidance": 4.0, "seed": 12, "width": 640, "height": 512}
    assert ("scheduler" in imported.values) != any("no exact equivalent" in n for n in imported.notes)


def test_dynamic_prompts_template_lines_stay_out_of_the_prompt():
    text = ("a red fox in the snow\nNegative prompt: blurry\n"
            "Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 5, Size: 512x512, "
            "Version: v1.10.1\nTemplate: a {red|blue} fox in the snow\nNegative Template: blurry")
    imported = a1111_import(text)
    assert imported.values["prompt"] == "a red fox in the snow" and imported.values["negative_prompt"] == "blurry"
    assert imported.values["steps"] == 20 and imported.values["scheduler"] == "Euler a"
    assert any("dynamic-prompts template" in note for note in imported.notes)


def test_settings_sdtui_does_not_apply_are_listed():
    text = ("a fox <lora:fluffy:0.7>\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 5, "
            "Size: 512x512, Model: dreamshaper_8, Clip skip: 2, Denoising strength: 0.45, Hires upscale: 2, "
            "Version: v1.10.1")
    imported = a1111_import(text)
    assert imported.notes == ["not applied here: model dreamshaper_8, clip skip 2, hires fix (upscale 2), "
                              "denoising strength 0.45"]
    assert imported.values["prompt"] == "a fox <lora:fluffy:0.7>"  # the LoRA is used as A1111 used it


def test_64_bit_seed_from_fooocus_in_a1111_text():
    imported = a1111_import("x\nSteps: 30, Sampler: DPM++ 2M SDE, Schedule type: Karras, CFG scale: 4, "
                            "Seed: 6952411511246973023, Size: 768x1280, Version: Fooocus v2.4.3")
    assert imported.values["seed"] == 6952411511246973023 and imported.values["scheduler"] == "DPM++ 2M SDE Karras"


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
    with pytest.raises(MetadataError, match="cannot read it as an image"):
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
    ("a red fox <lora:ink-style:0.8> <lyco:x:1>", "a-red-fox"),
    ("(a red fox:1.2), [snow:0.5] 1990s", "a-red-fox-snow-1990s"),
])
def test_prompt_slug_is_safe_for_any_prompt(prompt, expected):
    slug = prompt_slug(prompt)
    assert slug == expected or (expected == "image" and slug.startswith("image"))
    assert set(slug) <= set("abcdefghijklmnopqrstuvwxyz0123456789-") and len(slug) <= 48


def test_a_gguf_transformers_quantization_is_written_beside_the_model_and_read_back(tmp_path):
    """sdtui's own key: A1111's and civitai's readers skip keys they do not know, and the request parses as
    before; sdtui's importer, the history row and the history rebuilt from the PNG keep it."""
    from tui.store.history import History, HistoryEntry, info_fields
    from tui.store.importers import import_png

    request = GenerationRequest("a red fox", steps=8, seed=7)
    info = {"model": "z_image_turbo-Q8_0.gguf", "quantization": "Q8_0", "dtype": "bfloat16"}
    line = format_parameters(request, 7, info).split("\n")[-1]
    assert "Model: z_image_turbo-Q8_0.gguf, Quantization: Q8_0, Version: sdtui" in line
    assert request_from_parameters(format_parameters(request, 7, info)) == request

    history = History(tmp_path / "history.db", tmp_path / "outputs")
    entry = HistoryEntry.for_request(request, "done", **info_fields(info))
    path = history.save_image(Image.new("RGB", (8, 8)), request, 7, 0, entry, info)
    assert json.loads(history.recent()[0].extra) == {"quantization": "Q8_0"}
    assert import_png(path).quantization == "Q8_0"
    rebuilt = History(tmp_path / "again.db", tmp_path / "outputs")
    assert rebuilt.reconcile().adopted == 1
    assert rebuilt.recent()[0].extras()["quantization"] == "Q8_0"
