"""Reading a .safetensors file's header: tensor names, shapes and whether every byte the
header promises is present. Plain file reads, no torch: used to describe checkpoints in
the model picker and to refuse a truncated download before a loader trips over it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the format's own limit


class HeaderError(ValueError):
    """The file is not a readable .safetensors file; the message says why in a few words."""


@dataclass(frozen=True)
class SafetensorsHeader:
    shapes: dict[str, tuple[int, ...]]
    metadata: dict[str, str]
    dtypes: dict[str, str]  # "F16", "BF16", "F32", "I64"...
    data_bytes: int  # the end of the last tensor's data, as the header states it
    file_bytes: int
    header_bytes: int

    @property
    def truncated(self) -> bool:
        return self.file_bytes < 8 + self.header_bytes + self.data_bytes


def read_header(path: Path) -> SafetensorsHeader:
    try:
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise HeaderError("too short to be a .safetensors file")
            (length,) = struct.unpack("<Q", prefix)
            if not 2 <= length <= MAX_HEADER_BYTES:
                raise HeaderError("its header length is not plausible, so it is not a .safetensors file")
            raw = handle.read(length)
            size = path.stat().st_size
    except OSError as error:
        raise HeaderError(f"cannot be read ({error.strerror or error})") from None
    if len(raw) < length:
        raise HeaderError("it is truncated (the header is cut off)")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise HeaderError("its header is not valid JSON, so it is not a .safetensors file") from None
    if not isinstance(data, dict):
        raise HeaderError("its header is not a table of tensors")
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, str] = {}
    end = 0
    for name, entry in data.items():
        if name == "__metadata__":
            continue
        try:
            shapes[name] = tuple(int(n) for n in entry["shape"])
            dtypes[name] = str(entry.get("dtype", ""))
            end = max(end, int(entry["data_offsets"][1]))
        except (TypeError, KeyError, IndexError, ValueError):
            raise HeaderError(f"its header entry for {name!r} is malformed") from None
    metadata = data.get("__metadata__") or {}
    return SafetensorsHeader(shapes, metadata if isinstance(metadata, dict) else {}, dtypes, end, size, length)
