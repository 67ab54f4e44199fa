"""Quantizing a model to 4 bits as it loads, with bitsandbytes' NF4: whether this machine can, decided from
facts (pure, so every case is tested without a GPU), which components it applies to, what it holds per
weight, and the configs diffusers and transformers load with.

bitsandbytes is optional, never a dependency: without it, or where it cannot run, choosing NF4 is one
sentence naming the setting and what it needs, and the loaded model stays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tui.engine.device import Decision, DeviceError, parse_torch_release

QUANTIZE = ("none", "nf4", "nf4-encoders")
NF4 = "NF4"
INSTALL = "pip install -U bitsandbytes"
DENOISERS = ("transformer", "unet")
ENCODER_PREFIX = "text_encoder"
log = logging.getLogger("tui.engine.nf4")

# What one weight takes once quantized (bitsandbytes' functional.quantize_4bit, the path Linear4bit takes):
# a 4-bit code (0.5 byte) and, per block of 64 weights (its default blocksize), the block's absmax. sdtui asks
# for double quantization (bnb_4bit_use_double_quant; BitsAndBytesConfig's default is off), which stores each
# absmax as one byte and adds one float32 per 256 of them: 0.5 + 1/64 + 4/(64*256) = 0.5159 byte, against
# 0.5625 with float32 absmax. Per layer a few hundred bytes more (the code tables, an offset): left out.
BLOCKSIZE = 64
ABSMAX_BLOCKSIZE = 256
NF4_BYTES_PER_WEIGHT = 0.5 + 1 / BLOCKSIZE + 4 / (BLOCKSIZE * ABSMAX_BLOCKSIZE)

# bitsandbytes 4-bit on cuda: diffusers' quantizer asks for 0.43.3, transformers 5's (the text encoders) for
# 0.46.1 (BITSANDBYTES_MIN_VERSION). accelerate 1.1: transformers 5's floor for it, and diffusers'
# DiffusionPipeline.to refuses to move a pipeline holding bitsandbytes modules to cuda with an older one.
CUDA_BITSANDBYTES = (0, 46, 1)
ACCELERATE = (1, 1, 0)
# On mps: bitsandbytes' MPS backend first shipped in 0.50.0 (bitsandbytes-foundation/bitsandbytes#1983, merged
# 2026-07: usable without the Hub's Metal kernels, needs torch 2.9 or later; 0.49.2 has no mps backend). Its
# macOS wheels are built for macOS 14 and later (bitsandbytes#1818). diffusers before 0.39 refuses mps ("No
# GPU found") and places the weights on cuda: the patch of huggingface/diffusers#13361, merged as #13915,
# which 0.39 to 0.42.1 carry, so they need none.
MPS_BITSANDBYTES = (0, 50, 0)
MPS_TORCH = (2, 9, 0)
MPS_MACOS = (14, 0)
MPS_DIFFUSERS = (0, 39, 0)
MPS_METAL_KERNELS_MACOS = 26  # before it, bitsandbytes computes with its slower PyTorch fallbacks (#1983)


@dataclass(frozen=True)
class QuantizeFacts:
    """What the NF4 decision reads besides the setting and the device."""

    bitsandbytes: str | None  # its version; None where it cannot be imported
    torch: str = ""
    diffusers: str = ""
    accelerate: str = ""
    macos: tuple[int, int] | None = None


def _text(release: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in release)


def _older(version: str, floor: tuple[int, ...]) -> bool:
    return parse_torch_release(version) < floor


def choose_quantization(setting: str, device: str, facts: QuantizeFacts) -> Decision:
    """Whether the model loads quantized to NF4 on ``device``; DeviceError, one sentence naming the setting and
    what it needs, where it cannot (raised before anything is unloaded)."""
    if setting not in QUANTIZE:
        raise DeviceError(f"quantize: unknown {setting!r}; use one of {', '.join(QUANTIZE)}")
    if setting == "none":
        return Decision("quantize", "none", "set by the user: weights load at the run's dtype")
    if device not in ("cuda", "mps"):
        raise DeviceError(f"quantize: {setting} needs a GPU (cuda, or mps on a Mac with bitsandbytes 0.50 or later): "
                          f"diffusers refuses bitsandbytes on the {device.upper()}; set quantize to none here")
    needs = _missing(device, facts)
    if needs:
        raise DeviceError(f"quantize: {setting} on {device} needs {needs}")
    parts = "the transformer and the text encoders" if setting == "nf4-encoders" else "the transformer"
    reason = f"bitsandbytes {facts.bitsandbytes} quantizes {parts} to 4-bit NF4 as they load on {device}"
    if device == "mps" and (facts.macos or (0, 0))[0] < MPS_METAL_KERNELS_MACOS:
        reason += (f"; before macOS {MPS_METAL_KERNELS_MACOS} it computes with its PyTorch fallbacks, slower "
                   "than its Metal kernels (bitsandbytes-foundation/bitsandbytes#1983)")
    return Decision("quantize", NF4, reason)


def _missing(device: str, facts: QuantizeFacts) -> str:
    """What this machine lacks for NF4 on ``device``, as the rest of a sentence; "" when nothing."""
    floor = MPS_BITSANDBYTES if device == "mps" else CUDA_BITSANDBYTES
    if facts.bitsandbytes is None or _older(facts.bitsandbytes, floor):
        has = f"has {facts.bitsandbytes}" if facts.bitsandbytes else "has none"
        return f"bitsandbytes {_text(floor)} or later ({INSTALL}); this machine {has}"
    if _older(facts.accelerate, ACCELERATE):
        return f"accelerate {_text(ACCELERATE)} or later (pip install -U accelerate); this machine has " \
               f"{facts.accelerate or 'none'}"
    if device != "mps":
        return ""
    if facts.macos is not None and facts.macos < MPS_MACOS:
        return f"macOS {_text(MPS_MACOS)} or later, which bitsandbytes is built for; this Mac has " \
               f"{_text(facts.macos)}"
    if _older(facts.torch, MPS_TORCH):
        return f"torch {_text(MPS_TORCH[:2])} or later, which bitsandbytes' mps backend needs; this machine has " \
               f"{facts.torch or 'none'}"
    if _older(facts.diffusers, MPS_DIFFUSERS):
        return f"diffusers {_text(MPS_DIFFUSERS[:2])} or later (pip install -U diffusers), whose bitsandbytes " \
               f"loader accepts mps; this machine has {facts.diffusers}"
    return ""


def quantizes(setting: str, component: str) -> bool:
    """Whether ``setting`` quantizes the pipeline component named ``component``."""
    if setting == "none":
        return False
    return component in DENOISERS or (setting == "nf4-encoders" and component.startswith(ENCODER_PREFIX))


def components_to_quantize(setting: str, components) -> list[str]:
    return [name for name in components if quantizes(setting, name)]


def quantize_facts() -> QuantizeFacts:
    """QuantizeFacts for this machine. Imports bitsandbytes (and so torch): only asked when NF4 is."""
    import platform
    from importlib import metadata

    import torch

    from tui.engine.device import parse_macos_version

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return ""

    try:
        import bitsandbytes

        found = str(bitsandbytes.__version__)
    except Exception as error:  # an ImportError, or a broken install failing as it loads its libraries
        log.info("bitsandbytes cannot be imported: %s", error)
        found = None
    return QuantizeFacts(found, torch.__version__, version("diffusers"), version("accelerate"),
                         parse_macos_version(platform.mac_ver()[0]))


def nf4_arguments(torch_dtype) -> dict:
    """BitsAndBytesConfig's arguments, the same in diffusers and transformers: NF4, double-quantized, each
    layer computing in the run's dtype."""
    return {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": torch_dtype,
            "bnb_4bit_use_double_quant": True}


def pipeline_quantization(setting: str, components, torch_dtype) -> dict:
    """from_pretrained's argument quantizing ``components``' chosen ones; {} where none is chosen."""
    chosen = components_to_quantize(setting, components)
    if not chosen:
        return {}
    from diffusers import PipelineQuantizationConfig

    return {"quantization_config": PipelineQuantizationConfig(
        quant_backend="bitsandbytes_4bit", quant_kwargs=nf4_arguments(torch_dtype), components_to_quantize=chosen)}


def model_quantization(torch_dtype, device: str) -> dict:
    """A diffusers model class's from_single_file arguments quantizing it to NF4 on ``device``: without a
    device it places the weights, and so quantizes them, on the CPU."""
    from diffusers import BitsAndBytesConfig

    return {"quantization_config": BitsAndBytesConfig(**nf4_arguments(torch_dtype)), "device": device}


def quantized_components(pipe) -> list[str]:
    """The pipeline's components held in 4 bits by bitsandbytes."""
    return [name for name, module in pipe.components.items() if getattr(module, "is_loaded_in_4bit", False)]


def held_decision(components: list[str], dtype: str) -> Decision:
    """What the log and the loaded model's description say of the NF4 components."""
    return Decision("quantization", NF4, f"{', '.join(components)} held by bitsandbytes in 4-bit NF4 "
                                         f"(about {NF4_BYTES_PER_WEIGHT:.2f} byte a weight), each layer's weights "
                                         f"dequantized to {dtype} as it computes")
