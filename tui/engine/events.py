"""Plain events the engine reports while it loads and generates.

They carry data only, no behaviour, so the CLI, the app and the benchmarks can each
render them their own way. The app wraps them in Textual messages on the UI side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tui.engine.families import ModelFamily
from tui.engine.memory import MemorySample
from tui.engine.request import GenerationRequest


@dataclass(frozen=True)
class LoadStarted:
    model: str
    source: str  # demo | folder | hub


@dataclass(frozen=True)
class DownloadProgress:
    model: str
    done_bytes: int
    total_bytes: int | None


@dataclass(frozen=True)
class Loaded:
    model: str
    family: str
    device: str
    dtype: str
    seconds: float
    decisions: tuple[str, ...]
    family_info: ModelFamily | None = None
    memory: MemorySample | None = None
    setting: str = ""  # the model as the settings named it ("demo", a Hub id, a path)


@dataclass(frozen=True)
class Unloaded:
    """The previous model is gone and its memory handed back; ``memory`` is measured after, ``freed``
    is what the unload handed back in bytes (the device's on a GPU, the process's RSS on the CPU)."""
    model: str
    memory: MemorySample
    freed: int | None = None


@dataclass(frozen=True)
class Notice:
    message: str
    level: str = "info"  # info | warning


@dataclass(frozen=True)
class Started:
    request: GenerationRequest  # seed is always set here
    images: int
    steps: int


@dataclass(frozen=True)
class Step:
    image_index: int  # first image of the batch being made
    step: int  # 1-based
    total: int
    elapsed: float  # seconds since this image's pipeline call began
    step_seconds: float  # duration of this step alone
    it_per_s: float
    memory: MemorySample
    # A small PIL image, or None when no preview was due; it travels as the frame's payload.
    preview: Any = field(default=None, metadata={"image": True})


@dataclass(frozen=True)
class Timings:
    load_s: float
    first_step_s: float  # from the call to generate() to the end of the first step
    total_s: float  # this image, from its pipeline call to its decoded pixels
    it_per_s: float
    peak_memory: int  # bytes: device allocated on a GPU, process RSS on the CPU


@dataclass(frozen=True)
class Finished:
    image: Any = field(metadata={"image": True})  # PIL image
    index: int
    seed: int
    request: GenerationRequest
    timings: Timings
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cancelled:
    request: GenerationRequest
    completed: int
    message: str = "cancelled"


@dataclass(frozen=True)
class Failed:
    request: GenerationRequest | None
    message: str
    out_of_memory: bool = False
    completed: int = 0


Event = LoadStarted | DownloadProgress | Loaded | Notice | Started | Step | Finished | Cancelled | Failed
