"""Schedulers by the names people know from A1111, mapped onto diffusers classes.

Pure data plus one builder; diffusers is imported only when a scheduler is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SchedulerSpec:
    name: str
    diffusers_class: str
    a1111_name: str
    options: dict[str, Any] = field(default_factory=dict)


SCHEDULERS: tuple[SchedulerSpec, ...] = (
    SchedulerSpec("Euler", "EulerDiscreteScheduler", "Euler"),
    SchedulerSpec("Euler a", "EulerAncestralDiscreteScheduler", "Euler a"),
    SchedulerSpec("Heun", "HeunDiscreteScheduler", "Heun"),
    SchedulerSpec("DPM++ 2M", "DPMSolverMultistepScheduler", "DPM++ 2M",
                  {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    SchedulerSpec("DPM++ 2M Karras", "DPMSolverMultistepScheduler", "DPM++ 2M Karras",
                  {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    SchedulerSpec("DPM++ 2M SDE Karras", "DPMSolverMultistepScheduler", "DPM++ 2M SDE Karras",
                  {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    SchedulerSpec("DDIM", "DDIMScheduler", "DDIM"),
    SchedulerSpec("PNDM", "PNDMScheduler", "PLMS", {"skip_prk_steps": True}),
    SchedulerSpec("UniPC", "UniPCMultistepScheduler", "UniPC"),
    SchedulerSpec("LMS", "LMSDiscreteScheduler", "LMS"),
    SchedulerSpec("LMS Karras", "LMSDiscreteScheduler", "LMS Karras", {"use_karras_sigmas": True}),
)

DEFAULT_SCHEDULER = "DPM++ 2M Karras"

_BY_KEY = {spec.name.casefold(): spec for spec in SCHEDULERS}
# Names other tools write into PNG metadata, so their images can be re-run here.
_ALIASES = {
    "plms": "PNDM",
    "k_euler": "Euler",
    "k_euler_a": "Euler a",
    "k_euler_ancestral": "Euler a",
    "k_heun": "Heun",
    "k_lms": "LMS",
    "k_dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m": "DPM++ 2M",
    "euler_ancestral": "Euler a",
    "uni_pc": "UniPC",
    "ddim": "DDIM",
}


def scheduler_names() -> list[str]:
    return [spec.name for spec in SCHEDULERS]


def find_scheduler(name: str) -> SchedulerSpec | None:
    """The spec for a name, ignoring case; also accepts A1111 and ComfyUI spellings."""
    key = name.strip().casefold()
    if key in _BY_KEY:
        return _BY_KEY[key]
    for spec in SCHEDULERS:
        if spec.a1111_name.casefold() == key:
            return spec
    alias = _ALIASES.get(key)
    return _BY_KEY[alias.casefold()] if alias else None


def scheduler_from_a1111(sampler: str, schedule_type: str | None = None) -> SchedulerSpec | None:
    """A1111 1.6+ writes ``Sampler: DPM++ 2M, Schedule type: Karras``; older versions ``DPM++ 2M Karras``."""
    if schedule_type and schedule_type.strip().casefold() == "karras":
        combined = find_scheduler(f"{sampler} Karras")
        if combined:
            return combined
    return find_scheduler(sampler)


def build_scheduler(spec: SchedulerSpec, base_config: dict[str, Any]):
    """A new scheduler of ``spec``'s kind, configured from the model's own scheduler config."""
    import diffusers

    cls = getattr(diffusers, spec.diffusers_class)
    return cls.from_config(dict(base_config), **spec.options)
