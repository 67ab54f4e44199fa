"""``sdtui bench``: measure this machine with the user's own model and size, and say which
settings to use.

It settles, per machine, what general advice cannot: the mps guide recommends attention
slicing below 64 GB of memory while diffusers warns that slicing slows SDPA attention
down; float16 halves memory but is not faster everywhere. Each trial changes one thing
from the current settings, runs a short generation after a warm-up, and records it/s
(from the median step time), peak memory and whether swap grew.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

from tui.config import Settings

BENCH_SCHEDULERS = ("DPM++ 2M Karras", "Euler a", "UniPC")


@dataclass
class Trial:
    name: str
    attention_slicing: str
    dtype: str
    scheduler: str
    it_per_s: float = 0.0
    peak_bytes: int = 0
    swap_grew_bytes: int = 0
    seconds: float = 0.0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def plan_trials(settings: Settings, device: str) -> list[Trial]:
    """Slicing on and off, float16 and float32 where the device computes float16, then the
    schedulers with the best of those; the first trial is the baseline."""
    dtypes = ["float16", "float32"] if device in ("cuda", "mps") else ["float32"]
    trials = [Trial(f"slicing {s}, {d}", s, d, settings.scheduler) for d in dtypes for s in ("off", "on")]
    return trials


def scheduler_trials(best: Trial, current: str) -> list[Trial]:
    names = [current] + [n for n in BENCH_SCHEDULERS if n != current]
    return [replace(best, name=f"{best.name}, {name}", scheduler=name, it_per_s=0.0, peak_bytes=0,
                    swap_grew_bytes=0, seconds=0.0, error="") for name in names[:3]]


def measure(trial: Trial, settings: Settings, steps: int, engine_for: Callable, log: Callable[[str], None]) -> Trial:
    from tui.engine import GenerationRequest
    from tui.engine.events import Failed
    from tui.engine.memory import sample_memory

    engine = engine_for(trial)
    request = GenerationRequest("a lighthouse at dusk, oil painting", seed=1, steps=steps, width=settings.width,
                                height=settings.height, scheduler=trial.scheduler, guidance=settings.guidance)
    failures: list[str] = []

    def on_event(event) -> None:
        if isinstance(event, Failed):
            failures.append(event.message)

    engine.generate(replace(request, steps=2), on_event)  # warm-up: kernels, caches, the scheduler
    if failures:
        trial.error = failures[0]
        return trial
    import torch

    if engine.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    swap_before = sample_memory(engine.device).swap_used
    began = time.perf_counter()
    results = engine.generate(request, on_event)
    trial.seconds = time.perf_counter() - began
    if failures or not results:
        trial.error = failures[0] if failures else "no image"
        return trial
    trial.it_per_s = results[0].timings.it_per_s
    trial.peak_bytes = (torch.cuda.max_memory_allocated() if engine.device == "cuda"
                        else results[0].timings.peak_memory)
    trial.swap_grew_bytes = max(0, sample_memory(engine.device).swap_used - swap_before)
    log(describe(trial))
    return trial


def describe(trial: Trial) -> str:
    from tui.engine.memory import format_bytes

    if not trial.ok:
        return f"{trial.name:40} failed: {trial.error}"
    swap = f", swap grew {format_bytes(trial.swap_grew_bytes)}" if trial.swap_grew_bytes > 64 * 1024**2 else ""
    return f"{trial.name:40} {trial.it_per_s:6.2f} it/s  peak {format_bytes(trial.peak_bytes):>9}{swap}"


def best_of(trials: list[Trial]) -> Trial | None:
    """The fastest trial that did not fail or push the machine into swap; among trials
    within 3% of the fastest, the one using least memory."""
    usable = [t for t in trials if t.ok and t.swap_grew_bytes <= 64 * 1024**2] or [t for t in trials if t.ok]
    if not usable:
        return None
    fastest = max(t.it_per_s for t in usable)
    close = [t for t in usable if t.it_per_s >= 0.97 * fastest]
    return min(close, key=lambda t: t.peak_bytes)


def recommendation(best: Trial, current: dict[str, str]) -> dict[str, str]:
    """The settings that differ from what the current ones resolve to ("auto" included).
    Schedulers are measured but not recommended: they change the picture, not only the speed."""
    wanted = {"attention_slicing": best.attention_slicing, "dtype": best.dtype}
    return {k: v for k, v in wanted.items() if current.get(k) != v}


def resolved_settings(settings: Settings, device: str, ram: int) -> dict[str, str]:
    """What "auto" means on this device, so an explicit equal value is not recommended."""
    from tui.engine import device as devices

    slicing = devices.choose_attention_slicing(settings.attention_slicing, device, ram).value
    return {"attention_slicing": "on" if slicing else "off",
            "dtype": devices.choose_dtype(settings.dtype, device).value}


def run_bench(settings: Settings, allow_pickle: bool, steps: int,
              log: Callable[[str], None]) -> tuple[list[Trial], Trial | None, dict[str, str]]:
    """Every trial on one engine (reloading only when the dtype changes); returns the trials,
    the best one and what the current settings resolve to on this device."""
    from tui.engine import Engine, EngineOptions
    from tui.engine.memory import total_ram

    engine = Engine(EngineOptions(model=settings.model, device=settings.device, dtype=settings.dtype,
                                  attention_slicing=settings.attention_slicing, warmup=settings.warmup,
                                  allow_pickle=allow_pickle, previews=False))

    def engine_for(trial: Trial):
        if not engine.loaded or engine.options.dtype != trial.dtype:
            engine.options.dtype = trial.dtype
            engine.load()
        engine.options.attention_slicing = trial.attention_slicing
        return engine

    engine.load()
    machine = engine.machine
    log(f"machine: {machine.get('chip')}, {machine.get('os')}, torch {machine.get('torch')} "
        "(compare results only between the same three)")
    log(f"{engine.model_label} on {engine.device}, {settings.width}x{settings.height}, {steps} steps per trial")
    trials = [measure(t, settings, steps, engine_for, log) for t in plan_trials(settings, engine.device)]
    best = best_of(trials)
    if best is not None:
        log("schedulers (one UNet call a step each; the multistep solvers do more work between calls, "
            "which shows where the GPU outruns Python):")
        trials += [measure(t, settings, steps, engine_for, log) for t in scheduler_trials(best, settings.scheduler)]
    return trials, best, resolved_settings(settings, engine.device, total_ram())
