"""Device, dtype and Apple Silicon decisions.

Every decision here is a pure function of facts (device, total RAM, torch version,
the user's setting), so each can be tested without a Mac; each returns its reason,
which the engine logs. The rules follow the diffusers guide for Apple Silicon (mps).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEVICES = ("auto", "mps", "cuda", "cpu")
DTYPES = ("auto", "float16", "bfloat16", "float32")
SWITCHES = ("auto", "on", "off")
GIB = 1024**3
SLICING_RAM_THRESHOLD = 64 * GIB


@dataclass(frozen=True)
class Decision:
    name: str
    value: object
    reason: str

    def describe(self) -> str:
        shown = {True: "on", False: "off"}.get(self.value, self.value) if isinstance(self.value, bool) else self.value
        return f"{self.name}: {shown} ({self.reason})"


class DeviceError(ValueError):
    pass


def parse_torch_version(version: str) -> tuple[int, int]:
    """(major, minor) from strings such as '2.13.0+cpu' or '2.1.0a0+git1234'."""
    parts = version.split("+")[0].split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def choose_device(setting: str, mps_available: bool, cuda_available: bool) -> Decision:
    if setting not in DEVICES:
        raise DeviceError(f"device: unknown {setting!r}; use one of {', '.join(DEVICES)}")
    if setting == "auto":
        if mps_available:
            return Decision("device", "mps", "auto: Apple Silicon GPU (mps) is available")
        if cuda_available:
            return Decision("device", "cuda", "auto: no mps; an NVIDIA GPU (cuda) is available")
        return Decision("device", "cpu", "auto: neither mps nor cuda is available")
    if setting == "mps" and not mps_available:
        raise DeviceError("device: mps was asked for but this PyTorch build cannot use an Apple GPU; "
                          "use --device auto or cpu")
    if setting == "cuda" and not cuda_available:
        raise DeviceError("device: cuda was asked for but no CUDA GPU is visible; use --device auto or cpu")
    return Decision("device", setting, "set by the user")


def choose_dtype(setting: str, device: str) -> Decision:
    if setting not in DTYPES:
        raise DeviceError(f"dtype: unknown {setting!r}; use one of {', '.join(DTYPES)}")
    if setting == "auto":
        if device in ("mps", "cuda"):
            return Decision("dtype", "float16", f"auto: half precision halves memory on {device}")
        return Decision("dtype", "float32", "auto: the CPU computes float16 slowly or not at all")
    if device == "cpu" and setting == "float16":
        return Decision("dtype", "float16", "set by the user (float16 on the CPU is slow)")
    return Decision("dtype", setting, "set by the user")


def choose_attention_slicing(setting: str, device: str, total_ram: int) -> Decision:
    if setting not in SWITCHES:
        raise DeviceError(f"attention slicing: unknown {setting!r}; use one of {', '.join(SWITCHES)}")
    if setting != "auto":
        return Decision("attention slicing", setting == "on", "set by the user")
    gib = total_ram / GIB
    if device == "mps" and total_ram < SLICING_RAM_THRESHOLD:
        return Decision("attention slicing", True,
                        f"auto: mps with {gib:.0f} GiB of unified memory, under 64 GiB, where slicing "
                        "avoids memory pressure")
    if device == "mps":
        return Decision("attention slicing", False,
                        f"auto: mps with {gib:.0f} GiB of unified memory, enough without slicing")
    return Decision("attention slicing", False, f"auto: off on {device}, where it only slows attention down")


def choose_warmup(setting: str, device: str, torch_version: str) -> Decision:
    if setting not in SWITCHES:
        raise DeviceError(f"warm-up: unknown {setting!r}; use one of {', '.join(SWITCHES)}")
    if setting != "auto":
        return Decision("warm-up pass", setting == "on", "set by the user")
    if device == "mps" and parse_torch_version(torch_version) < (2, 0):
        return Decision("warm-up pass", True,
                        f"auto: torch {torch_version} on mps gives a wrong first image without "
                        "a 1-step warm-up")
    return Decision("warm-up pass", False, f"auto: not needed with torch {torch_version} on {device}")


def choose_batch_size(device: str, count: int) -> Decision:
    """How many images one pipeline call makes."""
    if device == "mps":
        return Decision("images per pipeline call", 1,
                        "mps: several images are made one after another, never batched")
    if device == "cpu":
        return Decision("images per pipeline call", 1, "cpu: batching gains nothing and delays the first image")
    size = max(1, min(count, 4))
    return Decision("images per pipeline call", size, f"{device}: up to 4 images per call")


def enable_mps_fallback() -> bool:
    """Let ops mps lacks run on the CPU. Must run before torch is first imported.

    Returns whether sdtui set the variable (a user's own value is kept).
    """
    if "PYTORCH_ENABLE_MPS_FALLBACK" in os.environ:
        return False
    os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] = "1"
    return True


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA raises torch.OutOfMemoryError; mps raises a RuntimeError with this text."""
    if type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("MPS backend out of memory" in text
                                                 or "CUDA out of memory" in text)
