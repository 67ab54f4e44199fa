"""Quantizing to 4-bit NF4 as a model loads (bitsandbytes): a setting written once, decided from the machine's
facts, refused in one sentence where it cannot run (the loaded model staying), and counted in the memory
estimate at NF4's bytes per weight. The load itself needs a GPU (diffusers refuses bitsandbytes on the CPU):
``python -m tests.bench.nf4_check --device cuda`` runs it."""

import logging
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from safetensors.numpy import save_file

from tui.config import ConfigError, Settings, load_settings, override, panel_fields
from tui.engine.catalog import CatalogEntry, describe
from tui.engine.device import DeviceError
from tui.engine.estimate import Part, estimate, folder_parts, quantized_on_load
from tui.engine.nf4 import (NF4, NF4_BYTES_PER_WEIGHT, QuantizeFacts, choose_quantization, components_to_quantize,
                            pipeline_quantization)

CUDA_OK = QuantizeFacts("0.50.2", "2.11.0+cu130", "0.42.1", "1.15.0")
MPS_OK = QuantizeFacts("0.50.2", "2.11.0", "0.42.1", "1.15.0", (15, 5))


@pytest.mark.parametrize("device,facts,needs", [
    ("cpu", CUDA_OK, "quantize: nf4 needs a GPU (cuda, or mps on a Mac with bitsandbytes 0.50 or later): diffusers "
                     "refuses bitsandbytes on the CPU; set quantize to none here"),
    ("cuda", QuantizeFacts(None, "2.11.0", "0.42.1", "1.15.0"),
     "quantize: nf4 on cuda needs bitsandbytes 0.46.1 or later (pip install -U bitsandbytes); this machine has none"),
    ("cuda", QuantizeFacts("0.45.5", "2.11.0", "0.42.1", "1.15.0"),
     "quantize: nf4 on cuda needs bitsandbytes 0.46.1 or later (pip install -U bitsandbytes); this machine has "
     "0.45.5"),
    ("cuda", QuantizeFacts("0.50.2", "2.11.0", "0.42.1", "0.33.0"),
     "quantize: nf4 on cuda needs accelerate 1.1.0 or later (pip install -U accelerate); this machine has 0.33.0"),
    ("mps", QuantizeFacts("0.49.2", "2.11.0", "0.42.1", "1.15.0", (15, 5)),  # 0.49.2 has no mps backend
     "quantize: nf4 on mps needs bitsandbytes 0.50.0 or later (pip install -U bitsandbytes); this machine has "
     "0.49.2"),
    ("mps", QuantizeFacts("0.50.2", "2.8.0", "0.42.1", "1.15.0", (15, 5)),
     "quantize: nf4 on mps needs torch 2.9 or later, which bitsandbytes' mps backend needs; this machine has 2.8.0"),
    ("mps", QuantizeFacts("0.50.2", "2.11.0", "0.42.1", "1.15.0", (13, 6)),
     "quantize: nf4 on mps needs macOS 14.0 or later, which bitsandbytes is built for; this Mac has 13.6"),
    ("mps", QuantizeFacts("0.50.2", "2.11.0", "0.38.0", "1.15.0", (15, 5)),
     "quantize: nf4 on mps needs diffusers 0.39 or later (pip install -U diffusers), whose bitsandbytes loader "
     "accepts mps; this machine has 0.38.0"),
])
def test_where_nf4_cannot_run_one_sentence_names_the_setting_and_what_it_needs(device, facts, needs):
    with pytest.raises(DeviceError) as refused:
        choose_quantization("nf4", device, facts)
    assert str(refused.value) == needs


def test_where_it_can_the_decision_says_what_and_why():
    cuda = choose_quantization("nf4", "cuda", CUDA_OK)
    assert cuda.value == NF4
    assert cuda.describe() == "quantize: NF4 (bitsandbytes 0.50.2 quantizes the transformer to 4-bit NF4 as they " \
                              "load on cuda)"
    both = choose_quantization("nf4-encoders", "mps", MPS_OK)
    assert "the transformer and the text encoders" in both.reason
    assert "before macOS 26 it computes with its PyTorch fallbacks" in both.reason  # no Metal kernels before 26
    assert "fallbacks" not in choose_quantization("nf4", "mps", replace(MPS_OK, macos=(26, 0))).reason
    assert choose_quantization("none", "cpu", QuantizeFacts(None)).value == "none"
    with pytest.raises(DeviceError, match=r"quantize: unknown 'int8'; use one of none, nf4, nf4-encoders"):
        choose_quantization("int8", "cuda", CUDA_OK)


def test_it_is_a_setting_everywhere_settings_are(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('quantize = "nf4-encoders"\n')
    assert load_settings(config).quantize == "nf4-encoders"
    with pytest.raises(ConfigError, match=r"quantize = 'int4' is not allowed; use one of none, nf4, nf4-encoders"):
        override(Settings(), {"quantize": "int4"})
    field = next(f for f in panel_fields() if f.name == "quantize")
    assert field.metadata["label"] == "Quantize" and field.metadata["reload"]
    from tui.cli.main import build_parser

    assert build_parser().parse_args(["generate", "x", "--quantize", "nf4"]).quantize == "nf4"
    from tui.client.session import Session
    from tui.locations import Locations

    session = Session(override(Settings(), {"quantize": "nf4"}), Locations(tmp_path, tmp_path))
    try:
        assert session.engine_options()["quantize"] == "nf4"  # it travels to the server with each load and job
    finally:
        session.history.close()


def test_on_the_cpu_nf4_is_one_sentence_and_the_loaded_model_stays(demo_engine, caplog):
    engine, options = demo_engine, demo_engine.options
    pipe = engine.pipe
    engine.options = replace(options, quantize="nf4")
    try:
        with caplog.at_level(logging.INFO, logger="tui.engine"), pytest.raises(DeviceError) as refused:
            engine.load()
    finally:
        engine.options = options
    assert str(refused.value).startswith("quantize: nf4 needs a GPU (cuda, or mps on a Mac with bitsandbytes 0.50")
    assert engine.pipe is pipe and engine.loaded_model == "demo" and engine.quantization == ""
    assert "unloaded" not in caplog.text


def test_without_bitsandbytes_the_sentence_names_the_package():
    """bitsandbytes made unimportable in a process of its own, as on a machine without it."""
    script = ("import sys; sys.modules['bitsandbytes'] = None\n"
              "from tui.engine.nf4 import choose_quantization, quantize_facts\n"
              "facts = quantize_facts(); assert facts.bitsandbytes is None, facts\n"
              "try:\n    choose_quantization('nf4', 'cuda', facts)\n"
              "except ValueError as error:\n    print(error)\n")
    said = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert said.returncode == 0, said.stderr
    assert said.stdout.strip() == ("quantize: nf4 on cuda needs bitsandbytes 0.46.1 or later (pip install -U "
                                   "bitsandbytes); this machine has none")


def test_the_bytes_per_weight_are_what_bitsandbytes_holds():
    """4 bits a weight, a one-byte absmax per 64 weights and a float32 per 256 absmax (double quantization)."""
    assert NF4_BYTES_PER_WEIGHT == pytest.approx(0.5 + 1 / 64 + 4 / 16384)
    bnb = pytest.importorskip("bitsandbytes")  # optional: measured where it is installed
    import torch

    weight = torch.randn(256, 1024, dtype=torch.bfloat16)
    packed, state = bnb.functional.quantize_4bit(weight, blocksize=64, compress_statistics=True, quant_type="nf4")
    held = sum(t.numel() * t.element_size() for t in (packed, state.absmax, state.state2.absmax))
    assert held == pytest.approx(weight.numel() * NF4_BYTES_PER_WEIGHT)


def _save(path, tensors: dict[str, tuple[int, ...]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: np.zeros(shape, np.float16) for name, shape in tensors.items()}, str(path))


def test_the_estimate_counts_the_quantized_linear_layers_at_nf4s_size(tmp_path):
    folder = tmp_path / "model"
    _save(folder / "transformer" / "diffusion_pytorch_model.safetensors", {
        "blocks.0.attn.to_q.weight": (1024, 1024), "blocks.0.attn.to_q.bias": (1024,),
        "blocks.0.norm.weight": (1024,), "proj_in.weight": (64, 16, 2, 2)})  # a convolution stays
    _save(folder / "text_encoder" / "model.safetensors", {
        "model.embed_tokens.weight": (1000, 256), "model.layers.0.mlp.up_proj.weight": (512, 256),
        "lm_head.weight": (1000, 256)})
    _save(folder / "vae" / "diffusion_pytorch_model.safetensors", {"decoder.conv_in.weight": (32, 16, 3, 3)})
    parts = {part.name: part for part in folder_parts(folder)}
    assert parts["transformer"].linear == 1024 * 1024 and parts["text_encoder"].linear == 512 * 256

    transformer_only = {part.name: part for part in quantized_on_load(tuple(parts.values()), "nf4")}
    nf4 = transformer_only["transformer"]
    assert nf4.quantization == NF4 and nf4.floating == 2 * 1024 + 64 * 16 * 4
    assert nf4.fixed_bytes == pytest.approx(1024 * 1024 * NF4_BYTES_PER_WEIGHT, abs=1)
    assert transformer_only["text_encoder"] == parts["text_encoder"] and transformer_only["vae"] == parts["vae"]

    encoders = {part.name: part for part in quantized_on_load(tuple(parts.values()), "nf4-encoders")}
    assert encoders["text_encoder"].floating == 2 * 1000 * 256  # the embeddings and the output head stay
    at_bf16 = estimate(tuple(parts.values()), "bfloat16", None, 1024).weights
    assert estimate(tuple(encoders.values()), "bfloat16", None, 1024).weights < at_bf16 * 0.5

    entry = describe(str(folder))
    assert entry.estimate("bfloat16", quantize="nf4").quantization == NF4
    assert entry.estimate("bfloat16", quantize="none").weights == at_bf16
    assert "transformer (NF4)" in entry.estimate("bfloat16", quantize="nf4").breakdown()


def test_a_gguf_transformer_and_a_whole_checkpoint_are_not_quantized_again():
    gguf = CatalogEntry("x.gguf", "x.gguf", "file", None, 1, "", quantization="Q8_0",
                        parts=(Part("transformer", 0, 6_500_000_000, "Q8_0"), Part("text_encoder", 4_000_000_000)))
    held = {part.name: part for part in gguf.estimate("bfloat16", quantize="nf4-encoders").parts}
    assert held["transformer"] == gguf.parts[0]  # stays Q8_0
    assert held["text_encoder"].quantization == NF4  # the base's encoders load in NF4, as the loader asks
    assert gguf.estimate("bfloat16", quantize="nf4").parts == gguf.parts
    whole = CatalogEntry("sd.safetensors", "sd", "file", None, 1, "", parts=(Part("unet", 860_000_000),))
    assert not whole.quantizes_on_load
    to_get = CatalogEntry("owner/model", "model", "get", None, 1, "", parts=(Part("transformer", 12_000_000_000),))
    assert to_get.estimate("bfloat16", quantize="nf4").weights == pytest.approx(12e9 * NF4_BYTES_PER_WEIGHT, rel=1e-6)


def test_the_pipeline_loads_with_bitsandbytes_configs_for_the_chosen_components():
    import torch

    components = ["scheduler", "text_encoder", "text_encoder_2", "tokenizer", "transformer", "vae"]
    assert components_to_quantize("nf4", components) == ["transformer"]
    assert components_to_quantize("nf4-encoders", components) == ["text_encoder", "text_encoder_2", "transformer"]
    assert pipeline_quantization("none", components, torch.bfloat16) == {}
    pytest.importorskip("bitsandbytes", reason="the configs check the installed bitsandbytes; it is optional")
    config = pipeline_quantization("nf4-encoders", components, torch.bfloat16)["quantization_config"]
    assert config.components_to_quantize == ["text_encoder", "text_encoder_2", "transformer"]
    diffusers_side = config._resolve_quant_config(is_diffusers=True, module_name="transformer")
    assert (diffusers_side.load_in_4bit, diffusers_side.bnb_4bit_quant_type) == (True, "nf4")
    assert diffusers_side.bnb_4bit_compute_dtype == torch.bfloat16 and diffusers_side.bnb_4bit_use_double_quant
    transformers_side = config._resolve_quant_config(is_diffusers=False, module_name="text_encoder")
    assert type(transformers_side).__module__.startswith("transformers")


def test_on_the_cpu_diffusers_itself_refuses_the_quantized_load(tiny_pipeline_dir):
    """Past sdtui's decision, the configs reach diffusers' bitsandbytes quantizer, which wants a GPU: the load
    fails as a ModelLoadError (and the engine would load the previous model again)."""
    pytest.importorskip("bitsandbytes")
    import torch

    from tui.engine.models import ModelLoadError, pipeline_loader

    with pytest.raises(ModelLoadError, match="No GPU found"):
        pipeline_loader(tiny_pipeline_dir, False, None, "nf4")(torch.float32)
