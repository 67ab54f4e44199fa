"""A quantized (GGUF) transformer once loaded: what is said of it, and the one known way model code can
break on its weights, decided from facts and patched only where the decision says.

A quantized weight is stored as packed bytes, so its ``dtype`` reads ``torch.uint8``. Model code that
casts its activations to a layer's weight dtype before calling the layer (``x.to(linear.weight.dtype)``)
then turns them into bytes: on mps ``F.linear`` refuses them ("MPS device does not support linear for
non-float inputs", city96/ComfyUI-GGUF#454 and #456 for ComfyUI's Ideogram-4, Gemma and Qwen3.5 code),
and elsewhere the activations are truncated or diffusers' GGUFLinear.forward_native, which casts only
the weight, fails on the mixed dtypes. The fix ComfyUI-GGUF#456 proposes is to make those reads give the
compute dtype; ``report_compute_dtype`` does that on a loaded model.

None of sdtui's families needs it with diffusers 0.37 (the floor) to 0.42.1: FLUX.1's, FLUX.2's,
Qwen-Image's and SD3's transformers cast to the hidden states' or the timestep's dtype, and Z-Image's
TimestepEmbedder reads the GGUF layer's ``compute_dtype`` when its weight is not floating point
(transformer_z_image.py). diffusers dequantizes on the weight's own device (every constant of
quantizers/gguf/utils.py is made with ``device=`` the blocks'), so the misplaced dequantized tensors
InvokeAI fixed for its own loader (invoke-ai/InvokeAI#8713) do not arise either.
tests/engine/test_gguf.py reads the transformers' code to keep this table true.
"""

from __future__ import annotations

import functools
from typing import Mapping

from tui.engine.device import Decision

# Family id -> where its transformer casts to a quantized layer's weight dtype (see above: none now).
WEIGHT_DTYPE_READERS: dict[str, str] = {}


def choose_compute_dtype_reads(device: str, family_id: str,
                               readers: Mapping[str, str] = WEIGHT_DTYPE_READERS) -> Decision:
    """Whether a quantized transformer of ``family_id`` must report its compute dtype as its weights'
    dtype. The cast breaks on every device (mps refuses the bytes; elsewhere they are wrong), so only
    the family decides; the torch release does not enter, as the weights' dtype is uint8 in all."""
    where = readers.get(family_id)
    if where is None:
        return Decision("quantized weight dtype", False,
                        "its transformer never casts activations to a quantized weight's dtype")
    failure = "which mps refuses" if device == "mps" else "which gives wrong activations"
    return Decision("quantized weight dtype", True,
                    f"{where} casts activations to a quantized weight's dtype (uint8), {failure}; the weights "
                    "report the compute dtype instead (city96/ComfyUI-GGUF#456)")


def report_compute_dtype(model) -> int:
    """Make each quantized weight of ``model`` report its layer's compute dtype as its dtype; the bytes and
    their dequantization are untouched. Returns how many weights were changed."""
    changed = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        compute = getattr(module, "compute_dtype", None)
        if compute is None or getattr(weight, "quant_type", None) is None or weight.is_floating_point():
            continue
        weight.__class__ = _reporting(type(weight))
        weight.reported_dtype = compute
        changed += 1
    return changed


@functools.cache
def _reporting(base: type) -> type:
    import torch

    def dtype(self):
        reported = getattr(self, "reported_dtype", None)
        return reported if reported is not None else torch.Tensor.dtype.__get__(self)

    return type(f"ComputeDtype{base.__name__}", (base,), {"dtype": property(dtype)})


def quantization_decision(label: str, dtype: str) -> Decision:
    """What the log and the loaded model's description say of a GGUF transformer."""
    return Decision("quantization", label, f"a GGUF transformer: its weights stay {label} in memory and each "
                                           f"layer's are dequantized to {dtype} as it computes")
