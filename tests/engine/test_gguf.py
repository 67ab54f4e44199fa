"""GGUF transformer files (flux1-dev-Q8_0.gguf, z_image_turbo-Q4_K.gguf...), written here as ComfyUI-GGUF's tools
write them (tests/tiny_gguf.py): read from their header without their data, listed with family, quantization
and stored bytes, loaded with their family's base repository from a local Hub cache, kept quantized, and
giving the image of the same pipeline with the dequantized weights, within what the dequantization itself
differs by; bare diffusers' own GGUF load gives sdtui's image exactly."""

import inspect
import re
import sys

import numpy as np
import pytest

from tests.conftest import hub_settings
from tests.tiny_gguf import dequantized, save_gguf, wide_flux_pipeline, wide_z_image_pipeline
from tests.tiny_models import hub_cache_with, z_image_to_original
from tui.engine import Engine, EngineOptions, GenerationRequest, ModelLoadError
from tui.engine.catalog import describe, scan_hub_cache, scan_models_dir
from tui.engine.estimate import Part
from tui.engine.gguf_header import GGUFError, quantization_label, read_gguf_header

pytest.importorskip("gguf")

TINY = dict(width=32, height=32, steps=2, seed=3, scheduler="FlowMatch Euler")
Z_IMAGE_REPO, FLUX_REPO = "Tongyi-MAI/Z-Image-Turbo", "black-forest-labs/FLUX.1-dev"
# Bytes per block and weights per block of the types written here (ggml's block_q8_0, block_q4_0, block_q5_0:
# a float16 scale, then 8, 4 or 5 bits a weight).
BLOCKS = {"Q8_0": (34, 32), "Q4_0": (18, 32), "Q5_0": (22, 32), "F32": (4, 1), "F16": (2, 1)}


@pytest.fixture(scope="module")
def z_image(tmp_path_factory):
    """A Z-Image-Turbo folder, its Hub cache, and its transformer under Tongyi-MAI's names (those of the
    published single files, which ComfyUI-GGUF's GGUF files keep)."""
    root = tmp_path_factory.mktemp("gguf-z")
    pipe = wide_z_image_pipeline()
    pipe.save_pretrained(root / "Z-Image-Turbo")
    cache = hub_cache_with(root / "hub", root / "Z-Image-Turbo", Z_IMAGE_REPO)
    return root, cache, z_image_to_original(pipe.transformer.state_dict())


@pytest.fixture(scope="module")
def z_image_q8(z_image):
    root, _cache, state = z_image
    return save_gguf(state, root / "models" / "z_image_turbo-Q8_0.gguf", "lumina2", "Q8_0")


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    """A FLUX.1-dev folder, its Hub cache, and its transformer in diffusers' names: diffusers' converter of BFL's
    layout splits the single blocks at FLUX.1's width, 3072, which a tiny transformer cannot have."""
    root = tmp_path_factory.mktemp("gguf-flux")
    pipe = wide_flux_pipeline()
    pipe.save_pretrained(root / "FLUX.1-dev")
    return root, hub_cache_with(root / "hub", root / "FLUX.1-dev", FLUX_REPO), pipe.transformer.state_dict()


def pixels(finished) -> np.ndarray:
    return np.asarray(finished[0].image).astype(int)


def image_of(model, **settings):
    engine = Engine(EngineOptions(model=str(model), preview_max_fps=0))
    engine.load()
    return engine, engine.generate(GenerationRequest("a red fox", **{**TINY, **settings}))


def stored_bytes_expected(state: dict, quantization: str) -> int:
    """What the file's tensors should take, by the convert tool's rules (tests/tiny_gguf.py)."""
    total = 0
    for tensor in state.values():
        kind = "F32" if tensor.ndim == 1 or tensor.numel() <= 1024 else quantization
        if kind != "F32" and tensor.shape[-1] % 32:
            kind = "F16"
        size, weights = BLOCKS[kind]
        total += tensor.numel() // weights * size
    return total


# --- the header -------------------------------------------------------------------------------


def test_the_header_gives_architecture_quantization_and_stored_bytes(z_image, z_image_q8):
    _root, _cache, state = z_image
    header = read_gguf_header(z_image_q8)
    assert (header.architecture, header.quantization, header.tensor_count) == ("lumina2", "Q8_0", len(state))
    assert header.stored_bytes == stored_bytes_expected(state, "Q8_0") < z_image_q8.stat().st_size
    assert header.params == sum(t.numel() for t in state.values())
    assert header.shapes == {name: tuple(t.shape) for name, t in state.items()}
    assert set(header.types.values()) == {"Q8_0", "F32", "F16"}  # F16: rows of 170, not whole blocks of 32


def test_the_header_is_read_without_the_tensor_data(tmp_path):
    """A header announcing 16 GB of weights, over a sparse file of that size: reading it takes milliseconds,
    where reading the data (zeros from a sparse file) would take seconds."""
    import time

    import gguf

    path = tmp_path / "flux1-dev-Q8_0.gguf"
    writer = gguf.GGUFWriter(path=None, arch="flux")
    rows, width = 2**18, 2**15  # 8 Gi weights
    writer.add_tensor_info("double_blocks.0.img_attn.qkv.weight", (rows, width // 32 * 34), np.dtype(np.uint8),
                           rows * width // 32 * 34, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file(path=path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size + rows * width // 32 * 34 + 64)
    started = time.perf_counter()
    header = read_gguf_header(path)
    assert time.perf_counter() - started < 0.5
    assert header.shapes == {"double_blocks.0.img_attn.qkv.weight": (rows, width)}
    assert header.stored_bytes == rows * width // 32 * 34 and header.quantization == "Q8_0"


@pytest.mark.parametrize("types, name, label", [
    ({"Q8_0": 900, "F32": 100}, "flux1-dev-Q8_0.gguf", "Q8_0"),
    ({"Q5_K": 800, "Q6_K": 150, "F32": 50}, "qwen-image-Q5_K_M.gguf", "Q5_K_M"),  # the name's finer label
    ({"Q4_K": 800, "Q6_K": 150, "F32": 50}, "z_image_turbo-Q4_K.gguf", "Q4_K"),
    ({"Q4_0": 900, "F32": 100}, "mislabelled-Q8_0.gguf", "Q4_0"),  # the tensors decide where the name disagrees
    ({"BF16": 900, "F32": 100}, "flux1-dev-BF16.gguf", "BF16"),
    ({"IQ4_XS": 900, "F32": 100}, "flux-2-klein-4b-IQ4_XS.gguf", "IQ4_XS"),
    ({}, "empty.gguf", ""),
])
def test_the_quantization_label(types, name, label):
    assert quantization_label(types, name) == label


def test_a_file_that_is_not_gguf_is_one_sentence(tmp_path):
    path = tmp_path / "flux1-dev-Q8_0.gguf"
    path.write_bytes(b"<html>404</html>")
    with pytest.raises(GGUFError, match=r"^model: flux1-dev-Q8_0.gguf cannot be read as a GGUF file \(.*\); "
                                        r"download it again$"):
        read_gguf_header(path)


# --- the picker -----------------------------------------------------------------------------


def test_the_models_folder_and_the_hub_cache_list_gguf_files_with_family_quantization_and_bytes(
        z_image, z_image_q8, tmp_path):
    import gguf

    root, _cache, state = z_image
    header = read_gguf_header(z_image_q8)
    # A text encoder's GGUF beside it is not a model to pick; Lumina 2's (also "lumina2") is listed, with why.
    text = gguf.GGUFWriter(path=None, arch="llama")
    text.add_tensor("blk.0.attn_q.weight", np.zeros((64, 64), np.float32))
    text.write_header_to_file(path=root / "models" / "qwen3-4b-Q8_0.gguf")
    text.write_kv_data_to_file()
    text.write_tensors_to_file()
    text.close()
    save_gguf({"layers.0.adaLN_modulation.1.weight": state["cap_embedder.1.weight"]},
              root / "models" / "lumina2-Q8_0.gguf", "lumina2", "Q8_0")

    listed = {e.name: e for e in scan_models_dir(root / "models")}
    assert sorted(listed) == ["lumina2-Q8_0.gguf", "z_image_turbo-Q8_0.gguf"]
    entry = listed["z_image_turbo-Q8_0.gguf"]
    assert (entry.family_label, entry.quantization, entry.parts[0], entry.note) == \
        ("Z-Image Turbo Q8_0", "Q8_0", Part("transformer", 0, header.stored_bytes, "Q8_0"), "")
    # Its transformer takes its stored bytes whatever the dtype the rest runs in.
    for dtype in ("float32", "bfloat16"):
        assert entry.estimate(dtype).resident(entry.parts[0]) == header.stored_bytes
    assert listed["lumina2-Q8_0.gguf"].family is None
    assert listed["lumina2-Q8_0.gguf"].note == "GGUF of architecture 'lumina2': not a transformer sdtui loads"
    assert describe(str(z_image_q8)).quantization == "Q8_0"

    hub = tmp_path / "hub"
    snapshot = hub / "models--jayn7--Z-Image-Turbo-GGUF" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / z_image_q8.name).write_bytes(z_image_q8.read_bytes())
    (hub / "models--jayn7--Z-Image-Turbo-GGUF" / "refs").mkdir()
    (hub / "models--jayn7--Z-Image-Turbo-GGUF" / "refs" / "main").write_text("abc")
    [cached] = scan_hub_cache(hub)
    assert (cached.name, cached.family_label, cached.parts[0].fixed_bytes) == \
        ("jayn7/Z-Image-Turbo-GGUF/z_image_turbo-Q8_0.gguf", "Z-Image Turbo Q8_0", header.stored_bytes)


# --- loading and generating -------------------------------------------------------------------


def assert_dequantized_like_gguf_py(transformer, path, convert=None):
    """Each quantized weight the model holds, dequantized by diffusers (torch) as it computes, against
    gguf-py's numpy dequantization of the same bytes. diffusers multiplies a Q8_0/Q4_0/Q5_0 block's
    float16 scale by its integers in float16, gguf-py in float32: they differ by float16's rounding of
    that product, at most half a float16 step, 2**-11 of the weight (plus 2**-24 absolute, float16's
    smallest step). That is far below the quantization error itself (a Q8_0 step is 1/127 of a block's
    largest weight), and is the only way the two images below can differ."""
    import torch
    from diffusers.quantizers.gguf.utils import GGUFParameter, dequantize_gguf_tensor

    reference = convert(checkpoint=dequantized(path)) if convert else dequantized(path)
    quantized = {name: p for name, p in transformer.named_parameters() if isinstance(p, GGUFParameter)}
    assert quantized, "no weight stayed quantized"
    for name, weight in quantized.items():
        assert weight.dtype == torch.uint8  # the packed bytes, as stored
        ours = dequantize_gguf_tensor(weight).float()
        theirs = reference[name]
        assert torch.all((ours - theirs).abs() <= theirs.abs() * 2**-11 + 2**-24), name


@pytest.mark.parametrize("quantization", ["Q8_0", "Q4_0", "Q5_0"])
def test_a_z_image_gguf_loads_quantized_and_gives_the_dequantized_weights_image(z_image, tmp_path, monkeypatch,
                                                                               quantization):
    from safetensors.torch import save_file

    root, cache, state = z_image
    path = save_gguf(state, tmp_path / f"z_image_turbo-{quantization}.gguf", "lumina2", quantization)
    hub_settings(monkeypatch, cache, "1")
    engine, from_gguf = image_of(path, guidance=0.0)
    assert type(engine.pipe).__name__ == "ZImagePipeline" and engine.family == "Z-Image Turbo"
    assert engine.describe()["quantization"] == from_gguf[0].info["quantization"] == quantization
    assert any(d.startswith(f"quantization: {quantization} (") for d in engine._loaded_event.decisions)
    from diffusers.loaders.single_file_utils import convert_z_image_transformer_checkpoint_to_diffusers

    assert_dequantized_like_gguf_py(engine.pipe.transformer, path, convert_z_image_transformer_checkpoint_to_diffusers)

    # The same pipeline with the weights gguf-py dequantizes, as a transformer-only .safetensors file, unquantized.
    plain = tmp_path / "plain" / "z_image_turbo_dequantized.safetensors"
    plain.parent.mkdir()
    save_file(dequantized(path), str(plain))
    _, from_plain = image_of(plain, guidance=0.0)
    # The weights differ by at most half a float16 step (above); through two steps and the VAE that moved no
    # pixel by more than one level here, so one level is the bound.
    assert np.abs(pixels(from_gguf) - pixels(from_plain)).max() <= 1


def test_a_flux_gguf_gives_bare_diffusers_own_gguf_image(flux, tmp_path, monkeypatch):
    import torch
    from diffusers import FluxPipeline, FluxTransformer2DModel, GGUFQuantizationConfig

    from tests.bare_diffusers import bare_image

    root, cache, state = flux
    path = save_gguf(state, tmp_path / "models" / "flux1-dev-Q8_0.gguf", "flux", "Q8_0")
    hub_settings(monkeypatch, cache, "1")
    assert [e.family_label for e in scan_models_dir(tmp_path / "models")] == ["FLUX.1 Q8_0"]
    engine, from_gguf = image_of(path, guidance=3.5)
    assert type(engine.pipe).__name__ == "FluxPipeline" and engine.family == "FLUX.1"
    assert_dequantized_like_gguf_py(engine.pipe.transformer, path)

    transformer = FluxTransformer2DModel.from_single_file(
        str(path), quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32),
        config=str(root / "FLUX.1-dev"), subfolder="transformer", torch_dtype=torch.float32)
    pipe = FluxPipeline.from_pretrained(root / "FLUX.1-dev", transformer=transformer, torch_dtype=torch.float32)
    for module in pipe.components.values():  # as tests/bare_diffusers.py: the same alignment as the engine's
        if isinstance(module, torch.nn.Module):
            for tensor in [*module.parameters(), *module.buffers()]:
                tensor.data = tensor.data.clone()
    pipe.set_progress_bar_config(disable=True)
    bare = bare_image(pipe, "a red fox", TINY["seed"], TINY["steps"], TINY["width"], TINY["height"],
                      guidance_scale=3.5)
    assert np.array_equal(pixels(from_gguf), bare)


def test_without_the_gguf_package_a_gguf_model_is_one_sentence_and_the_loaded_model_stays(
        z_image_q8, monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # as when it is not installed: importing it fails
    engine = Engine(EngineOptions(model="demo", preview_max_fps=0))
    engine.load()
    engine.options = EngineOptions(model=str(z_image_q8), preview_max_fps=0)
    with pytest.raises(ModelLoadError) as caught:
        engine.load()
    assert str(caught.value) == ("model: z_image_turbo-Q8_0.gguf is a GGUF file, which needs the gguf package; "
                                 'install it with `pip install "sdtui[gguf]"`')
    assert engine.loaded_model == "demo"
    entry = describe(str(z_image_q8))
    assert entry.family is None and entry.note == 'GGUF: needs the gguf package (pip install "sdtui[gguf]")'


def test_a_gguf_of_a_unet_names_the_transformers_that_load(tmp_path):
    import torch

    path = save_gguf({"input_blocks.0.0.weight": torch.zeros(64, 64)}, tmp_path / "sdxl-Q8_0.gguf", "sdxl", "Q8_0")
    with pytest.raises(ModelLoadError, match=r"^model: sdxl-Q8_0.gguf is a GGUF file \(its architecture says "
                                             r"'sdxl'\) but not a transformer sdtui can load; GGUF files of the "
                                             r"transformers of .*FLUX.1.* load$"):
        Engine(EngineOptions(model=str(path))).load()


# --- the quantized weight dtype -------------------------------------------------------------


def test_the_weight_dtype_decision_follows_the_family_not_the_device():
    from tui.engine.quantized import WEIGHT_DTYPE_READERS, choose_compute_dtype_reads

    for device in ("mps", "cuda", "cpu"):
        assert choose_compute_dtype_reads(device, "zimage").value is False
    readers = {"ideogram": "its timestep embedding"}
    on_mps = choose_compute_dtype_reads("mps", "ideogram", readers)
    assert on_mps.value is True and "which mps refuses" in on_mps.reason
    assert choose_compute_dtype_reads("cuda", "ideogram", readers).value is True
    assert WEIGHT_DTYPE_READERS == {}


@pytest.mark.parametrize("module", ["transformer_flux", "transformer_flux2", "transformer_z_image",
                                    "transformer_qwenimage", "transformer_sd3"])
def test_no_family_transformer_casts_to_a_quantized_weights_dtype(module):
    """What WEIGHT_DTYPE_READERS says, read from the installed diffusers: a weight's dtype is read only where
    a floating-point test guards it and the GGUF layer's compute_dtype stands in (Z-Image's embedder)."""
    import importlib

    source = inspect.getsource(importlib.import_module(f"diffusers.models.transformers.{module}"))
    for match in re.finditer(r"\.weight\.dtype", source):
        following = source[match.end():match.end() + 300]
        assert "is_floating_point" in following and "compute_dtype" in following, module


def test_report_compute_dtype_changes_what_the_weights_say_and_not_the_image(z_image, z_image_q8, monkeypatch):
    import torch

    from tui.engine.quantized import report_compute_dtype

    _root, cache, _state = z_image
    hub_settings(monkeypatch, cache, "1")
    engine, before = image_of(z_image_q8, guidance=0.0)
    layer = engine.pipe.transformer.layers[0].attention.to_q
    assert layer.weight.dtype == torch.uint8
    assert report_compute_dtype(engine.pipe.transformer) > 0
    assert layer.weight.dtype == torch.float32 and layer.weight.quant_type is not None
    after = engine.generate(GenerationRequest("a red fox", **{**TINY, "guidance": 0.0}))
    assert np.array_equal(pixels(before), pixels(after))
