"""Pre-quantized SDNQ repositories (Disty0's Z-Image-Turbo-SDNQ-uint4-svd-r32, FLUX.2-klein-4B-SDNQ-4bit-dynamic,
Qwen-Image-SDNQ-uint4-svd-r32...): diffusers folders whose transformer and text encoders were quantized by the
``sdnq`` package and saved with ``quantization_config.quant_method = "sdnq"`` in their config.json.

Their weights are stored as they will be held (packed integers, with scales and, for SVD, a low-rank
correction), so the memory estimate reads them from the headers like any other weights; the label shown in the
picker, the history and the PNG comes from the config. Loading needs the optional ``sdnq`` package imported
first: importing it registers its quantizer with diffusers and transformers, and transformers only learns of it
that way (diffusers' own SDNQ quantizer imports it for diffusers' models alone, sdnq_quantizer.py), so a text
encoder quantized by SDNQ would otherwise load with its packed weights read as plain ones. sdnq runs its
layers in PyTorch eager mode on mps and the CPU (its README: "SDNQ can run on any device (MPS (Apple Mac) ...)
with PyTorch Eager fallback mode").
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

from tui.engine.device import Decision

METHOD = "sdnq"
LABEL = "SDNQ"  # what every label of an SDNQ quantization starts with
INSTALL = 'pip install "sdtui[sdnq]"'


def quantization_label(config: dict) -> str:
    """ "SDNQ uint4", "SDNQ int8", "SDNQ uint4 dynamic" (a mix per layer, uint4 the smallest) from a
    quantization_config; "" where it is not SDNQ's."""
    if not isinstance(config, dict) or config.get("quant_method") != METHOD:
        return ""
    dtype = config.get("weights_dtype")
    label = f"{LABEL} {dtype}" if isinstance(dtype, str) and dtype else LABEL
    return label + (" dynamic" if config.get("use_dynamic_quantization") else "")


def folder_quantization(folder: Path) -> dict[str, str]:
    """Each component of a diffusers folder that SDNQ quantized, with its label."""
    found = {}
    for config in sorted(folder.glob("*/config.json")):
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        label = quantization_label(data.get("quantization_config") if isinstance(data, dict) else None)
        if label:
            found[config.parent.name] = label
    return found


def missing_message(folder: Path) -> str:
    return (f"model: {folder.name} is quantized with SDNQ, which needs the sdnq package; install it with "
            f"`{INSTALL}`")


def missing_note(quantization: str) -> str:
    """The picker's note for a model stored in ``quantization`` where that is SDNQ's and sdnq is not installed;
    "" otherwise. The package is looked for without importing it, which takes seconds."""
    if not quantization.startswith(LABEL):
        return ""
    try:
        found = importlib.util.find_spec("sdnq") is not None
    except (ImportError, ValueError):  # a broken install, or one being imported
        found = False
    return "" if found else f"needs sdnq ({INSTALL})"


def import_sdnq() -> bool:
    """Import sdnq, which registers its quantizer with diffusers and transformers; False where it is not
    installed."""
    try:
        importlib.import_module("sdnq")
    except ImportError:
        return False
    return True


def loaded_quantization(pipe) -> dict[str, str]:
    """The loaded pipeline's components that SDNQ holds quantized, with their labels: diffusers' models keep
    the quantization config as a dict in their config, transformers' as sdnq's config object."""
    found = {}
    for name, module in pipe.components.items():
        config = getattr(module, "config", None)
        quantization = config.get("quantization_config") if isinstance(config, dict) \
            else getattr(config, "quantization_config", None)
        if quantization is not None and not isinstance(quantization, dict):
            quantization = {key: getattr(quantization, key, None)
                            for key in ("quant_method", "weights_dtype", "use_dynamic_quantization")}
        label = quantization_label(quantization)
        if label:
            found[name] = label
    return found


def held_decision(components: dict[str, str], dtype: str) -> Decision:
    """What the log and the loaded model's description say of the SDNQ components."""
    labels = sorted(set(components.values()))
    return Decision("quantization", labels[0] if len(labels) == 1 else ", ".join(labels),
                    f"{', '.join(components)} quantized by SDNQ as the repository holds them, each layer's "
                    f"weights dequantized to {dtype} as it computes")
