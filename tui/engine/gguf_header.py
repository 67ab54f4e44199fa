"""What a GGUF file holds, read from its header: the architecture ComfyUI-GGUF's convert tool wrote
(``general.architecture``), each tensor's name, shape and quantization type, and the bytes its data
takes as stored. The gguf package's GGUFReader maps the file into memory and parses only the header;
the tensors' data stay unread views of the mapping, so a 12 GB file is described in milliseconds.

``gguf`` is an optional dependency (the ``gguf`` extra): without it, ``GGUFMissing`` says how to
install it, in one sentence naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from tui.engine.models import first_line

GGUF_SUFFIX = ".gguf"
INSTALL = 'pip install "sdtui[gguf]"'
# The mix a file's name gives (llama.cpp's and city96's naming: Q4_K_M, Q5_K_S, IQ4_XS, Q8_0...), which the
# tensor types alone cannot tell: a Q4_K_M file is mostly Q4_K with some Q6_K.
_NAMED_QUANTIZATION = re.compile(
    r"(?<![A-Za-z0-9])(I?Q\d_(?:K_[SMLX]|K|[01]|XXS|XS|S|M|NL)|BF16|F16|F32)(?![A-Za-z0-9])", re.IGNORECASE)


class GGUFError(Exception):
    """The file cannot be read as GGUF; the message is one sentence naming the file."""


class GGUFMissing(GGUFError):
    """The gguf package is not installed."""


@dataclass(frozen=True)
class GGUFHeader:
    architecture: str  # general.architecture; "" where the file has none (stable-diffusion.cpp's)
    shapes: dict[str, tuple[int, ...]]  # tensor names and their shapes as torch has them (ggml's reversed)
    types: dict[str, str]  # tensor names and their GGML types: "Q8_0", "Q4_K", "F32"...
    stored_bytes: int  # the tensors' data as stored, quantized
    params: int  # the weights the tensors hold
    quantization: str  # "Q8_0", "Q5_K_M"...: see quantization_label

    @property
    def tensor_count(self) -> int:
        return len(self.shapes)


def missing_message(path: Path) -> str:
    return f"model: {path.name} is a GGUF file, which needs the gguf package; install it with `{INSTALL}`"


def quantization_label(params_by_type: Mapping[str, int], filename: str = "") -> str:
    """The type holding most of the weights ("Q8_0", "Q4_K"), or the name's finer label where the name
    agrees with it ("Q5_K_M" for a file named so whose weights are mostly Q5_K). One-dimensional
    tensors (norms, biases) stay F32 in every file and are few weights, so they rarely decide."""
    if not params_by_type:
        return ""
    dominant = max(params_by_type, key=lambda name: (params_by_type[name], name))
    match = _NAMED_QUANTIZATION.search(Path(filename).stem)
    named = match.group(1).upper() if match else ""
    return named if named and (named == dominant or named.startswith(dominant + "_")) else dominant


def read_gguf_header(path: Path) -> GGUFHeader:
    """The header of the GGUF file at ``path``; GGUFMissing without the gguf package, GGUFError for a file
    that is not GGUF, is truncated or cannot be read."""
    path = Path(path)
    try:
        from gguf import GGUFReader
    except ImportError:
        raise GGUFMissing(missing_message(path)) from None
    try:
        reader = GGUFReader(path)
        tensors = list(reader.tensors)
        architecture = _string_field(reader, "general.architecture")
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        raise GGUFError(f"model: {path.name} cannot be read as a GGUF file ({first_line(error)}); "
                        "download it again") from None
    shapes, types, params_by_type = {}, {}, {}
    stored = params = 0
    for tensor in tensors:
        type_name = getattr(tensor.tensor_type, "name", str(tensor.tensor_type))
        shapes[tensor.name] = tuple(int(size) for size in reversed(tensor.shape.tolist()))
        types[tensor.name] = type_name
        stored += int(tensor.n_bytes)
        params += int(tensor.n_elements)
        params_by_type[type_name] = params_by_type.get(type_name, 0) + int(tensor.n_elements)
    return GGUFHeader(architecture, shapes, types, stored, params, quantization_label(params_by_type, path.name))


def _string_field(reader, key: str) -> str:
    field = reader.get_field(key)
    if field is None or not field.data:
        return ""
    return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
