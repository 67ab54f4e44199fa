"""Pre-quantized SDNQ repositories: a tiny Z-Image pipeline whose transformer and text encoder the sdnq package
quantized and saved as Disty0's repositories are saved (quantization_config with quant_method "sdnq" in each
config.json). Listed with its quantization and stored bytes, loaded by sdtui with both parts held quantized,
giving bare diffusers' image of the same folder, recorded in the PNG; int8 weights give the float pipeline's
image within quantization error; without sdnq, one sentence."""

import importlib
import sys

import numpy as np
import pytest

from tests.bare_diffusers import bare_image, bare_pipeline
from tests.bench.sdnq_check import quantize_with_sdnq
from tests.tiny_gguf import wide_z_image_pipeline
from tui.engine import Engine, EngineOptions, GenerationRequest, ModelLoadError
from tui.engine.catalog import describe, scan_models_dir
from tui.engine.sdnq import folder_quantization, quantization_label

pytest.importorskip("sdnq")

TINY = dict(width=32, height=32, steps=2, seed=3, scheduler="FlowMatch Euler", guidance=0.0)


def quantized_folder(folder, weights_dtype: str):
    """The wide tiny Z-Image pipeline with its transformer and text encoder quantized by sdnq to ``weights_dtype``
    (with its small layers, which sdnq leaves alone by default), saved to ``folder``."""
    pipe = wide_z_image_pipeline()
    quantize_with_sdnq(pipe, weights_dtype, svd=False, small_layers=True)
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def uint4(tmp_path_factory):
    return quantized_folder(tmp_path_factory.mktemp("sdnq") / "models" / "Z-Image-Turbo-SDNQ-uint4", "uint4")


def image_of(model, **settings):
    engine = Engine(EngineOptions(model=str(model), preview_max_fps=0))
    engine.load()
    return engine, engine.generate(GenerationRequest("a red fox", **{**TINY, **settings}))


def pixels(finished) -> np.ndarray:
    return np.asarray(finished[0].image.convert("RGB")).astype(int)


def sdnq_layers(module) -> int:
    return sum(1 for layer in module.modules() if hasattr(layer, "sdnq_dequantizer"))


@pytest.mark.parametrize("config,label", [
    ({"quant_method": "sdnq", "weights_dtype": "uint4"}, "SDNQ uint4"),
    ({"quant_method": "sdnq", "weights_dtype": "int8"}, "SDNQ int8"),
    ({"quant_method": "sdnq", "weights_dtype": "uint4", "use_dynamic_quantization": True}, "SDNQ uint4 dynamic"),
    ({"quant_method": "bitsandbytes", "load_in_4bit": True}, ""),
    (None, ""), ("sdnq", ""),
])
def test_the_label_comes_from_the_quantization_config(config, label):
    assert quantization_label(config) == label


def test_the_folder_is_listed_with_its_quantization_and_the_bytes_it_stores(uint4):
    assert folder_quantization(uint4) == {"text_encoder": "SDNQ uint4", "transformer": "SDNQ uint4"}
    [entry] = scan_models_dir(uint4.parent)
    assert entry.family_label == "Z-Image Turbo SDNQ uint4"
    parts = {part.name: part for part in entry.parts}
    assert parts["transformer"].quantization == parts["text_encoder"].quantization == "SDNQ uint4"
    assert parts["vae"].quantization == ""
    # sdnq keeps every tensor of a part it holds as saved (packed bytes, and scales in float32 where saved so),
    # whatever the run dtype: the estimate counts those parts as stored, and only the VAE at the run dtype.
    assert parts["transformer"].floating == 0 and parts["transformer"].fixed_bytes > 0
    at_32, at_16 = entry.estimate("float32"), entry.estimate("bfloat16")
    assert at_16.resident(parts["transformer"]) == at_32.resident(parts["transformer"])
    assert at_16.resident(parts["vae"]) * 2 == at_32.resident(parts["vae"])
    # NF4 is not applied again to what SDNQ holds.
    assert entry.estimate("float32", quantize="nf4-encoders").parts == entry.parts


def test_sdtui_loads_it_quantized_and_gives_bare_diffusers_image(uint4):
    importlib.import_module("sdnq")  # bare diffusers needs it imported, as the repositories' model cards say

    engine, finished = image_of(uint4)
    assert type(engine.pipe).__name__ == "ZImagePipeline"
    assert sdnq_layers(engine.pipe.transformer) > 0 and sdnq_layers(engine.pipe.text_encoder) > 0
    assert engine.describe()["quantization"] == finished[0].info["quantization"] == "SDNQ uint4"
    assert any(d.startswith("quantization: SDNQ uint4 (text_encoder, transformer quantized by SDNQ")
               for d in engine._loaded_event.decisions)
    # What the estimate said of the weights is what the loaded pipeline holds.
    estimate = describe(str(uint4)).estimate("float32")
    assert estimate.weights == pytest.approx(engine._weight_bytes, rel=0.02)

    bare = bare_pipeline(uint4)
    assert sdnq_layers(bare.transformer) == sdnq_layers(engine.pipe.transformer)
    expected = bare_image(bare, "a red fox", TINY["seed"], TINY["steps"], TINY["width"], TINY["height"],
                          guidance_scale=0.0)
    assert np.array_equal(pixels(finished), expected)


def test_int8_weights_give_the_float_image_within_quantization_error(tmp_path):
    float_folder = tmp_path / "float"
    wide_z_image_pipeline().save_pretrained(float_folder)
    _, plain = image_of(float_folder)
    _, int8 = image_of(quantized_folder(tmp_path / "int8", "int8"))
    difference = np.abs(pixels(int8) - pixels(plain))
    # 8-bit weights with a scale per row: a level or two here and there, against up to a whole range of 255.
    assert difference.mean() < 0.5 and difference.max() <= 8


def test_without_sdnq_the_model_is_one_sentence_and_the_loaded_model_stays(uint4, monkeypatch):
    engine = Engine(EngineOptions(model="demo", preview_max_fps=0))
    engine.load()
    monkeypatch.setitem(sys.modules, "sdnq", None)  # as when it is not installed: importing it fails
    engine.options = EngineOptions(model=str(uint4), preview_max_fps=0)
    with pytest.raises(ModelLoadError) as caught:
        engine.load()
    assert str(caught.value) == ("model: Z-Image-Turbo-SDNQ-uint4 is quantized with SDNQ, which needs the sdnq "
                                 'package; install it with `pip install "sdtui[sdnq]"`')
    assert engine.loaded_model == "demo"


def test_the_picker_says_what_an_sdnq_model_needs_where_sdnq_is_not_installed(uint4, monkeypatch, tmp_path):
    import importlib.util

    from tui.engine.getable import getable

    assert describe(str(uint4)).note == ""  # installed here: the picker says nothing
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "sdnq" else found(name, *rest))
    need = 'needs sdnq (pip install "sdtui[sdnq]")'
    assert describe(str(uint4)).note == need
    rows = {row.ref: row for row in getable([], cache_dir=tmp_path)}
    assert rows["Disty0/Z-Image-Turbo-SDNQ-uint4-svd-r32"].note == need
    assert rows["Tongyi-MAI/Z-Image-Turbo"].note == ""


def test_a_freed_sdnq_text_encoder_comes_back_quantized_for_a_new_prompt(uint4):
    """With text_encoders = "free" the encoder is dropped after encoding (on the CPU, as on a Mac) and read
    from disk again for a new prompt: read back through sdnq it encodes as the kept one does."""
    images = {}
    for setting in ("keep", "free"):
        engine = Engine(EngineOptions(model=str(uint4), preview_max_fps=0, text_encoders=setting))
        engine.load()
        images[setting] = [pixels(engine.generate(GenerationRequest(prompt, **TINY)))
                           for prompt in ("a red fox", "a blue bird")]
        if setting == "free":
            assert engine.pipe.text_encoder is None  # dropped after the second prompt's encoding
        engine.unload()
    assert all(np.array_equal(kept, freed) for kept, freed in zip(images["keep"], images["free"]))
