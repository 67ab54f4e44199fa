"""What the engine does at the end of each denoising step: diffusers' ``callback_on_step_end``."""

from __future__ import annotations

import logging
import os
import statistics
import threading
import time
from dataclasses import replace
from typing import Any, Callable

from tui.engine import device as devices
from tui.engine.events import Event, Notice, Step, Timings
from tui.engine.memory import MemorySample, sample_memory, swap_growth_warning
from tui.engine.preview import PreviewThrottle

log = logging.getLogger("tui.engine")
MEMORY_SAMPLE_INTERVAL_S = 0.25  # a step's memory figures are at most this old


class CancelRequested(Exception):
    """Raised inside the step callback to leave the pipeline at once, skipping the VAE decode."""


# Not a diffusers PipelineCallback: that is a ConfigMixin whose __init__ wants a CFG cutoff, and
# subclassing it would import diffusers with this module. The pipeline calls this the same way.
class StepCallback:
    """The step callback of one batch, over its passes (two with the hires fix): it times each step,
    samples memory, warns once if swap grows, stops at the job's cancel, keeps the last latents of
    a pass and reports each step as a Step event, with a preview when one is due."""

    tensor_inputs = ["latents"]  # callback_on_step_end_tensor_inputs

    def __init__(self, *, device: str, image_index: int, total_steps: int, called: float, swap_start: int,
                 cancel: threading.Event, on_event: Callable[[Event], None],
                 preview: Callable[[Any], Any] | None, throttle: PreviewThrottle,
                 held: Callable[[], dict[str, int]] | None = None):
        self.device = device
        self.held = held  # what the loaded model holds by part, for the memory line
        self.image_index = image_index  # the job's index of the batch's first image
        self.total_steps = total_steps  # of every pass
        self.called = called  # when the job was asked for: its first step is timed from there
        self.swap_start = swap_start
        self.cancel = cancel
        self.on_event = on_event
        self.preview = preview  # latents -> the preview image; None: no previews
        self.throttle = throttle
        self.began = self.last = time.perf_counter()  # last: when the previous step ended
        self.step_times: list[float] = []
        self.first_step_s: float | None = None
        self.peak_memory = 0
        self.memory: MemorySample | None = None  # the latest memory sample ...
        self.sampled = 0.0  # ... and when it was taken
        self.swap_warned = False
        self.steps_before = 0  # in the passes before this one
        self.pass_steps = total_steps  # the steps of this pass
        self.final_latents = None  # the last step's, for a float32 decode should float16 fail

    def begin_pass(self, steps: int) -> None:
        self.pass_steps = steps
        self.final_latents = None

    def end_pass(self) -> None:
        self.steps_before += self.pass_steps

    def __call__(self, pipe, step_index: int, timestep, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        now = time.perf_counter()
        self.step_times.append(now - self.last)
        self.last = now
        if self.first_step_s is None:
            self.first_step_s = now - self.called
        if self.cancel.is_set():
            raise CancelRequested
        last_of_pass = step_index + 1 == self.pass_steps
        memory = self._memory(now, last_of_pass)
        self.peak_memory = max(self.peak_memory, memory.device_allocated or memory.process_rss)
        if not self.swap_warned:
            self._warn_of_swap(memory.swap_used)
        if last_of_pass:
            self.final_latents = callback_kwargs["latents"]
        step = self.steps_before + step_index + 1
        preview = None
        if self.preview is not None and step < self.total_steps and self.throttle.due(step - 1, now):
            preview = self.preview(callback_kwargs["latents"])
        elapsed = now - self.began
        self.on_event(Step(self.image_index, step, self.total_steps, elapsed, self.step_times[-1],
                           step / elapsed if elapsed > 0 else 0.0, memory, preview))
        return callback_kwargs

    def _memory(self, now: float, last_of_pass: bool) -> MemorySample:
        if self.memory is None or now - self.sampled >= MEMORY_SAMPLE_INTERVAL_S or last_of_pass:
            sample = sample_memory(self.device)
            peak = max(self.peak_memory, sample.device_allocated or sample.process_rss)
            self.memory = replace(sample, held=self.held() if self.held else None, job_peak=peak)
            self.sampled = now
        return self.memory

    def _warn_of_swap(self, swap_used: int) -> None:
        warning = swap_growth_warning(self.swap_start, swap_used)
        if warning:
            warning += devices.swap_advice(self.device, os.environ.get(devices.MPS_WATERMARK_VARIABLE))
            self.swap_warned = True
            log.warning(warning)
            self.on_event(Notice(warning, "warning"))

    def timings(self, load_s: float) -> Timings:
        """The batch's timings, now that its last pass has decoded."""
        total = time.perf_counter() - self.began
        step_s = statistics.median(self.step_times) if self.step_times else 0.0
        final = sample_memory(self.device)
        return Timings(load_s=load_s, first_step_s=self.first_step_s or total, total_s=total,
                       it_per_s=(1.0 / step_s) if step_s else 0.0,
                       peak_memory=max(self.peak_memory, final.device_allocated or final.process_rss))
