"""The built-in list of models to get, checked against the family registry, and the user's own
known_models.toml: what it adds, what it replaces, and the one sentence a bad entry gets."""

import logging

import pytest

from tui.engine.families import FAMILIES, FLUX2_KLEIN, family, family_from_configs, family_from_gguf
from tui.engine.fit import GIB, judge, mps_budget
from tui.engine.getable import GET, getable, parts
from tui.engine.known_models import BITS_PER_WEIGHT, BUILT_IN, block_type, known_models, pipelines_do, read_entries

BUILT = known_models()
BY_ID = {entry.id: entry for entry in BUILT}
REPOSITORIES = [entry for entry in BUILT if not entry.file]
FILES = [entry for entry in BUILT if entry.file]
# general.architecture as city96/ComfyUI-GGUF's convert tool writes it: FLUX.2's files say "flux" as FLUX.1's do,
# Z-Image's "lumina2" (flux2.py, z_image.py); the tensor names tell them apart.
GGUF_ARCHITECTURE = {"flux": "flux", FLUX2_KLEIN: "flux", "qwen_image": "qwen_image", "zimage": "lumina2"}


def test_the_built_in_list_reads_whole_and_its_labels_and_ids_are_unique(caplog):
    with caplog.at_level(logging.WARNING, "tui.engine.known_models"):
        assert len(read_entries(BUILT_IN)) == len(BUILT) >= 25
    assert caplog.records == []
    assert len({entry.label for entry in BUILT}) == len(BUILT)
    assert len(BY_ID) == len(BUILT)


@pytest.mark.parametrize("entry", REPOSITORIES, ids=lambda entry: entry.label)
def test_a_repository_is_of_the_family_its_pipeline_class_says(entry):
    """What the registry makes of the repository's model_index.json and name is the entry's family and
    variant (klein 4B and 9B's model_index.json say is_distilled: flux2.py)."""
    index = {"_class_name": entry.pipeline, **({"is_distilled": True} if entry.family == FLUX2_KLEIN else {})}
    model = family_from_configs(index, name=entry.repo)
    assert (model.base, model.turbo) == (entry.family, bool(entry.variant))
    assert entry.does == pipelines_do(entry.family)
    assert all(count > 0 for count in entry.parameters.values())
    assert any(name in entry.parameters for name in ("transformer", "unet")) and "vae" in entry.parameters


@pytest.mark.parametrize("entry", FILES, ids=lambda entry: entry.label)
def test_a_gguf_file_is_smaller_than_its_model_and_loads_with_a_base_of_its_family(entry):
    base = BY_ID[entry.base]
    assert not base.file and base.family == entry.family and family(entry.family).single_file is not None
    assert entry.file.endswith(".gguf") and entry.quantization in entry.file
    assert block_type(entry.quantization) in BITS_PER_WEIGHT
    assert 0 < entry.download_bytes < base.parameters["transformer"] * 2
    assert family_from_gguf(GGUF_ARCHITECTURE[entry.family]) is not None


SDNQ = [entry for entry in REPOSITORIES if entry.quantization]


@pytest.mark.parametrize("entry", SDNQ, ids=lambda entry: entry.label)
def test_an_sdnq_repository_holds_its_transformer_and_encoders_quantized_and_its_vae_in_bf16(entry, tmp_path):
    plain = next(other for other in REPOSITORIES if not other.quantization and other.family == entry.family
                 and other.parameters == entry.parameters)
    held = {part.name: part for part in parts(entry)}
    assert held["vae"].floating == entry.parameters["vae"] and held["vae"].quantization == ""
    assert all(part.quantization == entry.quantization and part.floating == 0
               for name, part in held.items() if name != "vae")
    assert entry.download_bytes < plain.download_bytes * 0.6
    budget = mps_budget(24 * GIB, 6 * GIB)
    rows = getable([], cache_dir=tmp_path)
    row, base = (next(r for r in rows if r.ref == e.id) for e in (entry, plain))
    assert row.estimate("bfloat16").peak < base.estimate("bfloat16").peak
    if entry.repo == "Disty0/Z-Image-Turbo-SDNQ-uint4-svd-r32":  # 9.64 GB measured at 1024 px (sdnq_check)
        assert row.estimate("bfloat16").peak == pytest.approx(9.64e9, rel=0.05)
        assert not judge(row.estimate("bfloat16").peak, budget).label().startswith("swaps")


def test_a_model_to_get_is_judged_for_this_machine_without_a_file_on_disk(tmp_path):
    rows = {row.ref: row for row in getable([], cache_dir=tmp_path)}
    assert len(rows) == len(BUILT) and all(row.kind == GET for row in rows.values())
    flux, quantized = rows["black-forest-labs/FLUX.1-dev"], rows["city96/FLUX.1-dev-gguf/flux1-dev-Q8_0.gguf"]
    assert flux.note == quantized.note == "gated"  # the file's own repository is not, the base it needs is
    assert flux.size_bytes == pytest.approx(33.7e9, rel=0.01)  # its four components in bf16
    assert quantized.size_bytes == pytest.approx(12.6e9, rel=0.01)  # the file: 11.9 B weights at 8.5 bits
    full, small = flux.estimate("bfloat16"), quantized.estimate("bfloat16")
    assert small.encoders == full.encoders > 9e9  # the file loads with the base's T5-XXL and CLIP-L
    assert small.quantization == "Q8_0" and small.peak < full.peak
    budget = mps_budget(36 * GIB, 6 * GIB)  # a 36 GB Mac: 27 GB for the GPU
    assert judge(full.peak, budget).label().startswith("swaps ")
    assert judge(small.peak, budget).label().startswith("fits ")
    assert rows["stable-diffusion-v1-5/stable-diffusion-v1-5"].does == "text to image"
    assert rows["Qwen/Qwen-Image-Edit-2511"].does == "edit"


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


MINE = """
[[model]]
repo = "someone/tiny-sd"
label = "My tiny SD"
family = "sd1"
licence = "MIT"
parameters = { unet = 1_000, text_encoder = 500, vae = 200 }

[[model]]
repo = "black-forest-labs/FLUX.1-schnell"
label = "schnell, as I call it"
family = "flux"
variant = "turbo"
licence = "Apache-2.0"
parameters = { transformer = 11_891_178_560, text_encoder = 123_060_480, text_encoder_2 = 4_762_310_656, vae = 83_819_683 }
"""


def test_the_users_file_adds_entries_and_replaces_those_with_the_same_id(tmp_path):
    entries = {entry.id: entry for entry in known_models(_write(tmp_path / "known_models.toml", MINE))}
    assert len(entries) == len(BUILT) + 1
    mine = entries["someone/tiny-sd"]
    assert (mine.label, mine.does, mine.gated, mine.download_bytes) == ("My tiny SD", "text to image", False, 3_400)
    assert [part.name for part in parts(mine)] == ["text_encoder", "unet", "vae"]
    assert entries["black-forest-labs/FLUX.1-schnell"].label == "schnell, as I call it"


BAD = MINE + """
[[model]]
repo = "someone/misspelt"
label = "Misspelt"
family = "flux1"
parameters = { transformer = 12 }

[[model]]
repo = "someone/negative"
label = "Negative"
family = "sd1"
parameters = { unet = -5 }

[[model]]
repo = "someone/q9"
file = "model-Q9_0.gguf"
base = "Qwen/Qwen-Image"
quantization = "Q9_0"
label = "Q9"
family = "qwen_image"
parameters = { transformer = 12 }

[[model]]
repo = "someone/three-bits"
quantization = "SDNQ int3"
label = "Three bits"
family = "zimage"
parameters = { transformer = 12, vae = 1 }

[[model]]
repo = "someone/pickles"
file = "model.ckpt"
base = "Qwen/Qwen-Image"
label = "A pickle"
family = "qwen_image"
parameters = { transformer = 12 }
"""


def test_a_bad_entry_is_one_sentence_naming_file_entry_and_field_said_once_and_the_rest_load(tmp_path, caplog):
    path = _write(tmp_path / "known_models.toml", BAD)
    with caplog.at_level(logging.WARNING, "tui.engine.known_models"):
        entries = {entry.id for entry in known_models(path)}
        known_models(path)  # the picker reads the file each time it opens: said once
    assert "someone/tiny-sd" in entries and len(entries) == len(BUILT) + 1
    said = [record.getMessage() for record in caplog.records]
    assert said == [
        f"{path}: model entry 3 (Misspelt): family 'flux1' is not a family sdtui knows; use one of "
        + ", ".join(f.id for f in FAMILIES)
        + "; that entry is left out",
        f"{path}: model entry 4 (Negative): parameters unet = -5 is not allowed; parameters must be a table of "
        "transformer, unet, text_encoder, text_encoder_2, text_encoder_3, vae to positive whole numbers of weights; "
        "that entry is left out",
        f"{path}: model entry 5 (Q9): quantization 'Q9_0' is not one sdtui can size for a GGUF file; use one of "
        "Q8_0, Q6_K, Q5_K, Q5_0, Q4_K, Q4_0, Q3_K, Q2_K (with _S or _M where the file's name has it); "
        "that entry is left out",
        f"{path}: model entry 6 (Three bits): quantization 'SDNQ int3' is not one sdtui can size for a repository; "
        "use one of SDNQ uint4, SDNQ int8, SDNQ uint4 dynamic (an SDNQ repository's), or leave it out; "
        "that entry is left out",
        f"{path}: model entry 7 (A pickle): file 'model.ckpt' is not allowed; name a .safetensors or .gguf file "
        "by its path in the repository (folder/name.gguf); that entry is left out"]
    assert all(message.count(". ") == 0 for message in said)


def test_a_file_that_is_not_toml_is_said_and_the_built_in_list_stays(tmp_path, caplog):
    path = _write(tmp_path / "known_models.toml", "[[model]\nrepo = ")
    with caplog.at_level(logging.WARNING, "tui.engine.known_models"):
        assert len(known_models(path)) == len(BUILT)
    assert caplog.records[0].getMessage().startswith(f"{path}: cannot be read (")
