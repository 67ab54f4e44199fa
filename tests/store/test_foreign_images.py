"""Real images from other tools (tests/data/foreign), imported by sdtui and read by sd-parsers,
an independent reader, as the truth: the prompt, negative prompt, steps, CFG scale and seed that
sdtui takes must be one of the samplers sd-parsers finds in the same file."""

from pathlib import Path

import pytest
from sd_parsers import ParserManager

from tui.store.images import MetadataError
from tui.store.importers import import_png

FOREIGN = Path(__file__).parents[1] / "data" / "foreign"
SOURCES = {"AUTOMATIC1111": "A1111", "COMFYUI": "ComfyUI", "FOOOCUS": "Fooocus", "INVOKEAI": "InvokeAI",
           "NOVELAI": "NovelAI"}

# What sdtui's scheduler becomes for each file: an exact equivalent, or None where the file's
# sampler has none (the current scheduler is kept and a note says so).
EXPECTED_SCHEDULER = {
    "AUTOMATIC1111/automatic1111_cropped.jpg": "UniPC",
    "AUTOMATIC1111/automatic1111_cropped.png": "UniPC",
    "ComfyUI/img2img_cropped.png": "DPM++ 2M",  # sample_dpmpp_2m, normal
    "ComfyUI/night_evening_day_morning_cropped.png": None,  # dpmpp_2m with ComfyUI's "simple" schedule
    "ComfyUI/noisy_latents_3_subjects_cropped.png": None,  # dpmpp_sde
    "ComfyUI/unclip_2pass_cropped.png": None,  # dpmpp_sde
    "Fooocus/fooocus1_cropped.png": "DPM++ 2M SDE Karras",  # dpmpp_2m_sde_gpu, karras
    "InvokeAI/invokeai_dream1.png": "LMS",
    "InvokeAI/invokeai_imeta1.png": "Euler",
    "InvokeAI/invokeai_sdmeta1.png": "LMS",
    "NovelAI/novelai1_cropped.png": "Euler a",
}
# Known gap: A1111's "stealth" metadata hidden in the alpha channel is not read.
NOT_IMPORTED = {"AUTOMATIC1111/automatic1111_stealth.png"}


def _files() -> list[str]:
    return sorted(str(p.relative_to(FOREIGN)) for p in FOREIGN.rglob("*") if p.suffix in (".png", ".jpg"))


def test_every_file_is_listed():
    assert set(_files()) == set(EXPECTED_SCHEDULER) | NOT_IMPORTED


def _lines(texts) -> list[str]:
    """The lines of one text, or of several joined, in any order (sdtui joins several with newlines)."""
    text = texts if isinstance(texts, str) else "\n".join(p.value.strip() for p in texts)
    return sorted(line for line in text.split("\n") if line.strip())


def _number(value):
    return None if value is None else float(value)


@pytest.mark.parametrize("name", sorted(EXPECTED_SCHEDULER))
def test_import_matches_sd_parsers(name):
    truth = ParserManager().parse(FOREIGN / name)
    imported = import_png(FOREIGN / name)
    assert imported.source == SOURCES[truth.generator.name]
    values = imported.values

    def matches(sampler) -> bool:
        seed = sampler.parameters.get("seed", sampler.parameters.get("noise_seed"))
        return (_lines(sampler.prompts) == _lines(values["prompt"])
                and _lines(sampler.negative_prompts) == _lines(values.get("negative_prompt", ""))
                and _number(sampler.parameters.get("steps", values["steps"])) == values["steps"]
                and _number(sampler.parameters.get("cfg_scale")) == values["guidance"]
                and _number(seed) == _number(values.get("seed")))

    assert any(matches(sampler) for sampler in truth.samplers), (values, truth.samplers)
    assert values.get("scheduler") == EXPECTED_SCHEDULER[name]
    if EXPECTED_SCHEDULER[name] is None:
        assert any("no exact equivalent" in note for note in imported.notes)


@pytest.mark.parametrize("name", sorted(NOT_IMPORTED))
def test_known_gaps_say_what_was_looked_for(name):
    with pytest.raises(MetadataError, match="no generation parameters found"):
        import_png(FOREIGN / name)


def test_two_pass_comfyui_takes_the_final_pass_and_names_the_first():
    imported = import_png(FOREIGN / "ComfyUI/unclip_2pass_cropped.png")
    assert imported.values["prompt"] == "beautiful scenery landscape outdoors mountains"
    assert (imported.values["width"], imported.values["height"]) == (1920, 1088)  # the LatentUpscale's size
    assert imported.notes[-1].startswith("not applied here: denoise 0.52 (it refined an earlier pass")
    assert "the earlier pass (26 steps of uni_pc_bh2)" in imported.notes[-1]


def test_fooocus_json_imports_the_users_prompt_with_its_63_bit_seed():
    imported = import_png(FOREIGN / "Fooocus/fooocus1_cropped.png")
    assert imported.values["prompt"] == "a smiling goldfish" and imported.values["seed"] == 6952411511246973023
    assert (imported.values["width"], imported.values["height"]) == (768, 1280)
    assert "Fooocus styles" in imported.notes[-1]
