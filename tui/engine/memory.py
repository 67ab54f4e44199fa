"""Memory readings: the device's allocator, the process, the system, and swap.

On a Mac the GPU shares unified memory with everything else, so swap is what turns a
20-second image into a 10-minute one; a rising swap figure during a run is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SWAP_WARNING_BYTES = 256 * 1024**2


@dataclass(frozen=True)
class MemorySample:
    device_allocated: int | None  # bytes held by tensors on the device
    device_reserved: int | None  # bytes the device driver/allocator holds
    device_limit: int | None  # what the device can give (mps: its allocator's ceiling; cuda: the card)
    process_rss: int
    system_used: int
    system_total: int
    swap_used: int
    device_unlimited: bool = False  # mps with the watermark off: jobs may run into swap
    device_recommended: int | None = None  # mps: the GPU's recommended working set
    device_free: int | None = None  # cuda: free on the card, other processes' use counted
    # What the loaded model holds, by part ("transformer", "text encoders", "VAE"; 0: freed while images
    # denoise), and the job's peak so far (device allocated on a GPU, process RSS on the CPU); None
    # where no model or job is in question.
    held: dict[str, int] | None = None
    job_peak: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _device_figures(device: str) -> tuple[int | None, int | None, int | None, bool, int | None, int | None]:
    """Allocated, reserved, limit, unlimited, recommended working set (mps), free (cuda)."""
    if device == "cuda":
        import torch

        free, total = torch.cuda.mem_get_info()
        return torch.cuda.memory_allocated(), torch.cuda.memory_reserved(), total, False, None, free
    if device == "mps":
        import os

        import torch

        from tui.engine.device import MPS_WATERMARK_VARIABLE, mps_memory_limit

        recommended = torch.mps.recommended_max_memory() if hasattr(torch.mps, "recommended_max_memory") else None
        limit = mps_memory_limit(recommended, os.environ.get(MPS_WATERMARK_VARIABLE))
        return (torch.mps.current_allocated_memory(), torch.mps.driver_allocated_memory(), limit.limit,
                limit.unlimited and recommended is not None, recommended, None)
    return None, None, None, False, None, None


_process = None  # this process, for psutil, made at the first sample: importing psutil takes 10 ms


def sample_memory(device: str) -> MemorySample:
    global _process
    import psutil

    if _process is None:
        _process = psutil.Process()
    allocated, reserved, limit, unlimited, recommended, free = _device_figures(device)
    system = psutil.virtual_memory()
    return MemorySample(
        device_allocated=allocated,
        device_reserved=reserved,
        device_limit=limit,
        process_rss=_process.memory_info().rss,
        system_used=system.total - system.available,
        system_total=system.total,
        swap_used=psutil.swap_memory().used,
        device_unlimited=unlimited,
        device_recommended=recommended,
        device_free=free,
    )


def total_ram() -> int:
    import psutil

    return psutil.virtual_memory().total


def swap_growth_warning(swap_at_start: int, swap_now: int, threshold: int = SWAP_WARNING_BYTES) -> str | None:
    """A warning when swap grew by more than ``threshold`` since the job started."""
    grown = swap_now - swap_at_start
    if grown <= threshold:
        return None
    return (f"swap grew by {format_bytes(grown)} during this job: the system is short of memory and "
            "generation will slow down sharply; try attention slicing, a smaller size or closing other apps")


def format_bytes(count: int | None) -> str:
    if count is None:
        return "n/a"
    if abs(count) < 1024:
        return f"{count:.0f} B"
    value = count / 1024
    for unit in ("KB", "MB"):
        if abs(value) < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def release_device_memory(device: str, collect: bool = True) -> None:
    """Hand the allocator's cached blocks back to the device (mps, cuda), after a garbage
    collection when ``collect``: dropped modules in reference cycles (peft's) only go then.
    Best effort: a failure is logged and ignored."""
    import gc
    import logging

    if collect:
        gc.collect()
    try:
        import torch

        if device == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()
        elif device == "mps" and torch.backends.mps.is_available():
            torch.mps.empty_cache()
    except Exception:
        logging.getLogger("tui.engine").debug("could not empty the device cache", exc_info=True)
