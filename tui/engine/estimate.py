"""The memory a model will need on this machine, known before it loads: its weights per component,
read from the files' headers and counted at the dtype it will run in, plus a job's working memory at
the chosen size, measured per family. Pure functions of files and figures: no torch.

A model that does not fit a Mac's memory does not fail, it swaps, and a one-minute image takes
twenty; so the estimate is shown in the picker and said at every load, and nothing is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from tui.engine.safetensors_header import HeaderError, read_header

GB = 1000**3  # the families' job memory figures are measured in these
FLOATING = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}  # converted to the run dtype when loaded
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
ENCODER_PREFIX = "text_encoder"  # text_encoder, text_encoder_2, text_encoder_3


@dataclass(frozen=True)
class Part:
    """One component's weights: ``floating`` of them are converted to the run dtype when loaded;
    ``fixed_bytes`` stay as stored (quantized weights, integer buffers)."""

    name: str  # the pipeline's attribute: transformer, unet, text_encoder, vae
    floating: int = 0
    fixed_bytes: int = 0
    quantization: str = ""  # "Q8_0", "Q4_K", "NF4", "SDNQ uint4" where the weights are quantized
    # Of ``floating``, the linear layers' matrices (what NF4 quantizes); None: not known, taken as all of them.
    linear: int | None = field(default=None, compare=False)
    floating_stored: int = field(default=0, compare=False)  # the bytes ``floating`` takes in the files

    def resident(self, dtype_bytes: int) -> int:
        return self.floating * dtype_bytes + self.fixed_bytes

    @property
    def is_encoder(self) -> bool:
        return self.name.startswith(ENCODER_PREFIX)


def header_part(name: str, paths: list[Path]) -> Part | None:
    """A component's weights from its .safetensors files' headers (None when none can be read)."""
    parts = [split_header(read, lambda _tensor: name) for read in _headers(paths)]
    if not parts:
        return None
    found = [p.get(name, Part(name)) for p in parts]
    return Part(name, sum(p.floating for p in found), sum(p.fixed_bytes for p in found),
                linear=sum(p.linear or 0 for p in found), floating_stored=sum(p.floating_stored for p in found))


def _headers(paths: list[Path]):
    for path in paths:
        try:
            yield read_header(path)
        except HeaderError:
            continue


def split_header(header, component_of) -> dict[str, Part]:
    """One file's weights per component, ``component_of`` naming each tensor's (a whole checkpoint holds
    its UNet, VAE and text encoders under their own prefixes)."""
    floating: dict[str, int] = {}
    stored: dict[str, int] = {}
    fixed: dict[str, int] = {}
    linear: dict[str, int] = {}
    for tensor, shape in header.shapes.items():
        name = component_of(tensor)
        count = _count(shape)
        dtype = header.dtypes.get(tensor, "F16")
        if dtype in FLOATING:
            floating[name] = floating.get(name, 0) + count
            stored[name] = stored.get(name, 0) + count * FLOATING[dtype]
            if is_linear_weight(tensor, shape):
                linear[name] = linear.get(name, 0) + count
        else:
            fixed[name] = fixed.get(name, 0) + count * _INTEGER_BYTES.get(dtype, 1)
    return {name: Part(name, floating.get(name, 0), fixed.get(name, 0), linear=linear.get(name, 0),
                       floating_stored=stored.get(name, 0))
            for name in {*floating, *fixed}}


# The matrices a 4-bit quantizer leaves at the run dtype although they are two-dimensional: token and
# position embeddings (nn.Embedding, which bitsandbytes' replace_with_bnb_linear does not replace) and a
# language model's output head, which transformers keeps unquantized (get_modules_to_not_convert).
_NOT_LINEAR = ("embed_tokens", "shared", "token_embedding", "position_embedding", "word_embeddings",
               "position_embeddings", "token_type_embeddings", "relative_attention_bias", "lm_head", "wte", "wpe")


def is_linear_weight(tensor: str, shape) -> bool:
    """Whether a tensor, by its name and shape, is a linear layer's weight matrix (what NF4 quantizes)."""
    module, _, kind = tensor.rpartition(".")
    return kind == "weight" and len(shape) == 2 and module.rpartition(".")[2] not in _NOT_LINEAR


_INTEGER_BYTES = {"I64": 8, "U64": 8, "I32": 4, "U32": 4, "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1,
                  "F8_E4M3": 1, "F8_E5M2": 1}


def _count(shape) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def folder_parts(folder: Path) -> tuple[Part, ...]:
    """A diffusers folder's components, each counted once: fp16 and full-precision copies of a
    component hold the same weights, so one variant of each is read."""
    from tui.engine.models import weight_variant
    from tui.engine.sdnq import folder_quantization

    files: dict[tuple[str, str | None], list[Path]] = {}
    for path in sorted(folder.glob("*/*.safetensors")):
        files.setdefault((path.parent.name, weight_variant(path.name)), []).append(path)
    parts: dict[str, Part] = {}
    for (name, _variant), paths in files.items():
        part = header_part(name, paths)
        if part is not None and (name not in parts or part.floating > parts[name].floating):
            parts[name] = part
    quantized = folder_quantization(folder)
    return tuple(as_stored(parts[name], quantized[name]) if name in quantized else parts[name]
                 for name in sorted(parts))


def as_stored(part: Part, quantization: str) -> Part:
    """A part whose quantizer keeps every tensor as it was saved: its floating tensors too (an SDNQ part's scales
    and SVD factors stay float32 where saved so, whatever the run dtype), so all of it is counted as stored."""
    return Part(part.name, 0, part.fixed_bytes + part.floating_stored, quantization, linear=0)


@dataclass(frozen=True)
class Estimate:
    """What a model will hold: its parts' weights at the run dtype, and a job's working memory
    (None where the family's was never measured: only the weights are counted then)."""

    parts: tuple[Part, ...]
    dtype_bytes: int
    working: int | None
    size: tuple[int, int]  # the job's size the working memory is for

    def resident(self, part: Part) -> int:
        return part.resident(self.dtype_bytes)

    @property
    def weights(self) -> int:
        return sum(self.resident(part) for part in self.parts)

    @property
    def encoders(self) -> int:
        return sum(self.resident(part) for part in self.parts if part.is_encoder)

    @property
    def peak(self) -> int:
        return self.weights + (self.working or 0)

    @property
    def peak_without_encoders(self) -> int:
        """The peak when the text encoders are freed after encoding: they run before the denoising
        steps, whose working memory is the larger."""
        return self.peak - self.encoders

    def at_size(self, size: tuple[int, int]) -> "Estimate":
        """The same model's estimate for a job of another size."""
        if self.working is None:
            return replace(self, size=size)
        scale = (size[0] * size[1]) / float(self.size[0] * self.size[1])
        return replace(self, working=int(self.working * scale), size=size)

    @property
    def measured(self) -> bool:
        return self.working is not None

    @property
    def quantization(self) -> str:
        return next((part.quantization for part in self.parts if part.quantization), "")

    def breakdown(self) -> str:
        """ "transformer 12.0 GB, text encoders 9.5 GB, VAE 0.2 GB; a 1024x1024 job 2.6 GB" """
        groups: dict[str, int] = {}
        for part in self.parts:
            label = _part_label(part)
            groups[label] = groups.get(label, 0) + self.resident(part)
        text = ", ".join(f"{label} {gb(count)} GB" for label, count in groups.items() if count)
        if self.working is not None:
            text += f"; a {self.size[0]}x{self.size[1]} job {gb(self.working)} GB"
        else:
            text += "; a job's working memory on top (not measured for this family)"
        return text


def _part_label(part: Part) -> str:
    if part.is_encoder:
        return "text encoders"
    if part.name == "vae":
        return "VAE"
    return part.name + (f" ({part.quantization})" if part.quantization else "")


def quantized_on_load(parts: tuple[Part, ...], setting: str) -> tuple[Part, ...]:
    """The parts as they will be held when the ``quantize`` setting quantizes some as they load: their linear
    layers' matrices at NF4's bytes per weight, the rest (biases, norms, embeddings) at the run dtype. Parts
    already quantized (a GGUF transformer) stay as stored."""
    from tui.engine.nf4 import NF4, NF4_BYTES_PER_WEIGHT, quantizes

    def held(part: Part) -> Part:
        if not quantizes(setting, part.name) or part.quantization or not part.floating:
            return part
        linear = part.floating if part.linear is None else part.linear
        return Part(part.name, part.floating - linear, part.fixed_bytes + math.ceil(linear * NF4_BYTES_PER_WEIGHT),
                    NF4, linear=0)

    return tuple(held(part) for part in parts)


def working_bytes(job_memory_gb: float | None, native_size: int, width: int, height: int,
                  images_per_call: int = 1) -> int | None:
    """A job's working memory at ``width`` x ``height``: the family's, measured at its native size
    (peak minus weights, docs/performance.md), scaled by the pixel count, which the latents, the
    activations and the VAE's decode all grow with (attention runs in memory-efficient kernels, so
    its scores are not held whole)."""
    if job_memory_gb is None:
        return None
    scale = (width * height) / float(native_size * native_size)
    return int(job_memory_gb * GB * scale * max(1, images_per_call))


def estimate(parts: tuple[Part, ...], dtype: str, job_memory_gb: float | None, native_size: int,
             size: tuple[int, int] | None = None, images_per_call: int = 1) -> Estimate:
    """The estimate for a model's ``parts`` running in ``dtype`` at ``size`` (the family's native
    size when not given)."""
    width, height = size or (native_size, native_size)
    return Estimate(parts, DTYPE_BYTES.get(dtype, 2),
                    working_bytes(job_memory_gb, native_size, width, height, images_per_call), (width, height))


def gb(count: int) -> str:
    """Bytes as the figure macOS, Activity Monitor and Apple's specifications call GB (GiB): a 16 GB
    Mac shows 16."""
    value = count / 1024**3
    if value < 0.1:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"
