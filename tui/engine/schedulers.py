"""Schedulers by the names people know from A1111, mapped onto diffusers classes, and the
names other tools write for them.

Pure data plus one builder; diffusers is imported only when a scheduler is built. Only exact
equivalents are listed (the same algorithm with the same noise schedule), but for ComfyUI's multistep
solvers on flow models (COMFY_FLOW_SAMPLERS says how near). The diffusers
scheduler overview's "A1111/k-diffusion" table is the source for the sampler classes;
``use_karras_sigmas`` and ``use_exponential_sigmas`` compute the same sigmas as
k-diffusion's ``get_sigmas_karras`` and ``get_sigmas_exponential``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

UNIFORM, KARRAS, EXPONENTIAL = "Uniform", "Karras", "Exponential"


@dataclass(frozen=True)
class SchedulerSpec:
    name: str
    diffusers_class: str
    a1111_sampler: str  # the name A1111 1.9+ writes as "Sampler"
    options: dict[str, Any] = field(default_factory=dict)
    # The "Schedule type" A1111 writes for it; None for samplers that have none (DDIM, PLMS, UniPC).
    schedule: str | None = UNIFORM
    flow: bool = False  # for flow-matching models only (the families' samplers say which family takes which)
    # Runs with a fixed shift where the pipeline passes mu anyway (FLUX's, Z-Image's, Qwen-Image's do):
    # DPMSolverMultistepScheduler.set_timesteps asserts use_dynamic_shifting whenever it is given mu.
    fixed_shift_with_mu: bool = True


_KARRAS = {"use_karras_sigmas": True}
_DPMPP_2M = {"algorithm_type": "dpmsolver++", "solver_order": 2}
_DPMPP_2M_SDE = {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}
# The multistep solvers on a flow-matching model's sigmas (their use_flow_sigmas); the model's shift
# becomes their flow_shift (build_scheduler).
_FLOW_SIGMAS = {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}

SCHEDULERS: tuple[SchedulerSpec, ...] = (
    SchedulerSpec("Euler", "EulerDiscreteScheduler", "Euler"),
    SchedulerSpec("Euler Karras", "EulerDiscreteScheduler", "Euler", _KARRAS, KARRAS),
    SchedulerSpec("Euler a", "EulerAncestralDiscreteScheduler", "Euler a"),
    SchedulerSpec("Heun", "HeunDiscreteScheduler", "Heun"),
    SchedulerSpec("Heun Karras", "HeunDiscreteScheduler", "Heun", _KARRAS, KARRAS),
    SchedulerSpec("DPM++ 2M", "DPMSolverMultistepScheduler", "DPM++ 2M", _DPMPP_2M),
    SchedulerSpec("DPM++ 2M Karras", "DPMSolverMultistepScheduler", "DPM++ 2M", {**_DPMPP_2M, **_KARRAS}, KARRAS),
    SchedulerSpec("DPM++ 2M SDE", "DPMSolverMultistepScheduler", "DPM++ 2M SDE", _DPMPP_2M_SDE),
    SchedulerSpec("DPM++ 2M SDE Karras", "DPMSolverMultistepScheduler", "DPM++ 2M SDE",
                  {**_DPMPP_2M_SDE, **_KARRAS}, KARRAS),
    SchedulerSpec("DPM++ 2M SDE Exponential", "DPMSolverMultistepScheduler", "DPM++ 2M SDE",
                  {**_DPMPP_2M_SDE, "use_exponential_sigmas": True}, EXPONENTIAL),
    SchedulerSpec("DDIM", "DDIMScheduler", "DDIM", schedule=None),
    SchedulerSpec("PNDM", "PNDMScheduler", "PLMS", {"skip_prk_steps": True}, None),
    SchedulerSpec("UniPC", "UniPCMultistepScheduler", "UniPC", schedule=None),
    SchedulerSpec("LMS", "LMSDiscreteScheduler", "LMS"),
    SchedulerSpec("LMS Karras", "LMSDiscreteScheduler", "LMS", _KARRAS, KARRAS),
    SchedulerSpec("LCM", "LCMScheduler", "LCM"),
    # Flow-matching models (Z-Image, FLUX, SD3...) ship this scheduler; their pipelines pass it sigmas
    # or mu that the other classes do not all take (pipeline_z_image.py, retrieve_timesteps).
    SchedulerSpec("FlowMatch Euler", "FlowMatchEulerDiscreteScheduler", "Euler", flow=True),
    # UniPCMultistepScheduler.set_timesteps takes sigmas and mu, so every flow pipeline runs it;
    # DPMSolverMultistepScheduler's takes no sigmas, so it runs only in the pipelines that pass none
    # to it (pipeline_flux2*.py, pipeline_stable_diffusion_3*.py drop or never make them).
    SchedulerSpec("FlowMatch UniPC", "UniPCMultistepScheduler", "UniPC", _FLOW_SIGMAS, None, flow=True),
    SchedulerSpec("FlowMatch DPM++ 2M", "DPMSolverMultistepScheduler", "DPM++ 2M", {**_DPMPP_2M, **_FLOW_SIGMAS},
                  flow=True, fixed_shift_with_mu=False),
)

DEFAULT_SCHEDULER = "DPM++ 2M Karras"

_BY_KEY = {spec.name.casefold(): spec for spec in SCHEDULERS}
_BY_SAMPLER_AND_SCHEDULE = {(spec.a1111_sampler.casefold(), (spec.schedule or UNIFORM).casefold()): spec
                            for spec in SCHEDULERS if not spec.flow}

# Older A1111 sampler spellings (its aliases list) and the short names of the first web UIs.
_A1111_ALIASES = {
    "k_euler": "Euler", "k_euler_a": "Euler a", "k_euler_ancestral": "Euler a", "k_heun": "Heun",
    "k_lms": "LMS", "k_dpmpp_2m": "DPM++ 2M", "k_dpmpp_2m_sde": "DPM++ 2M SDE", "plms": "PLMS",
}

# ComfyUI's sampler_name (KSampler) onto A1111 sampler names; its scheduler input is read apart.
COMFY_SAMPLERS = {
    "euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "lms": "LMS", "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_sde": "DPM++ 2M SDE", "ddim": "DDIM", "uni_pc": "UniPC", "uni_pc_bh2": "UniPC", "lcm": "LCM",
}
COMFY_SCHEDULES = {"normal": UNIFORM, "karras": KARRAS, "exponential": EXPONENTIAL, "ddim_uniform": UNIFORM}

# InvokeAI builds the diffusers classes itself, so its names map one to one (its SCHEDULER_MAP);
# the "k_" names are InvokeAI 2's.
INVOKEAI_SCHEDULERS = {
    "ddim": "DDIM", "pndm": "PNDM", "plms": "PNDM", "lms": "LMS", "lms_k": "LMS Karras", "k_lms": "LMS",
    "heun": "Heun", "heun_k": "Heun Karras", "k_heun": "Heun", "euler": "Euler", "euler_k": "Euler Karras",
    "k_euler": "Euler", "euler_a": "Euler a", "k_euler_a": "Euler a", "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_k": "DPM++ 2M Karras", "dpmpp_2m_sde": "DPM++ 2M SDE", "dpmpp_2m_sde_k": "DPM++ 2M SDE Karras",
    "unipc": "UniPC", "lcm": "LCM",
}

# A1111 1.9 made "Automatic" (and a missing "Schedule type") mean the sampler's own default,
# which is Karras or Exponential for these (sd_samplers_kdiffusion.samplers_k_diffusion).
_A1111_DEFAULT_SCHEDULE = {
    "dpm++ 2m": KARRAS, "dpm++ sde": KARRAS, "dpm++ 2m sde": EXPONENTIAL, "dpm++ 2m sde heun": EXPONENTIAL,
    "dpm++ 2s a": KARRAS, "dpm++ 3m sde": EXPONENTIAL, "dpm2": KARRAS, "dpm2 a": KARRAS,
}
# Suffixes a combined sampler name can carry ("DPM++ 2M Karras", A1111 before 1.9).
_SCHEDULE_SUFFIXES = ("Karras", "Exponential", "Uniform", "Automatic", "Polyexponential", "SGM Uniform",
                      "KL Optimal", "Align Your Steps", "Simple", "Normal", "DDIM", "Beta")


def scheduler_names(flow: bool | None = None) -> list[str]:
    """Every scheduler's name; only flow-matching ones (``flow``=True) or only the others (False)."""
    return [spec.name for spec in SCHEDULERS if flow is None or spec.flow == flow]


def find_scheduler(name: str) -> SchedulerSpec | None:
    """The spec for one of sdtui's names, ignoring case; also accepts A1111's older spellings."""
    key = name.strip().casefold()
    if key in _BY_KEY:
        return _BY_KEY[key]
    base = _A1111_ALIASES.get(key) or COMFY_SAMPLERS.get(key) or key
    return _BY_SAMPLER_AND_SCHEDULE.get((base.casefold(), UNIFORM.casefold()))


def a1111_version(version: str | None) -> tuple[int, int] | None:
    """(1, 10) from "v1.10.1", "v1.9.4-169-ga30b19dd" or Forge's "f2.0.1v1.10.1-previous-..."."""
    found = re.findall(r"v(\d+)\.(\d+)", version or "")
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def split_a1111_sampler(sampler: str) -> tuple[str, str | None]:
    """ "DPM++ 2M Karras" -> ("DPM++ 2M", "Karras"); a name without a schedule suffix -> (name, None)."""
    sampler = sampler.strip()
    for suffix in _SCHEDULE_SUFFIXES:
        if sampler.casefold().endswith(" " + suffix.casefold()):
            return sampler[: -len(suffix) - 1].strip(), suffix
    return sampler, None


def scheduler_from_a1111(sampler: str, schedule_type: str | None = None,
                         version: str | None = None) -> SchedulerSpec | None:
    """The exact equivalent of an A1111 ``Sampler`` and ``Schedule type``, or None.

    A1111 1.6-1.8 wrote "DPM++ 2M Karras"; 1.9+ writes "Sampler: DPM++ 2M, Schedule type: Karras",
    and reads a missing schedule type as the sampler's default, Karras for DPM++ 2M. Images
    from before 1.9 (no version, or an older one) meant the plain schedule.
    """
    base, suffix = split_a1111_sampler(_A1111_ALIASES.get(sampler.strip().casefold(), sampler))
    schedule = (schedule_type or "").strip() or None
    if suffix and (schedule is None or schedule.casefold() == "automatic"):
        schedule = suffix
    if schedule is None or schedule.casefold() == "automatic":
        modern = (a1111_version(version) or (0, 0)) >= (1, 9)
        schedule = _A1111_DEFAULT_SCHEDULE.get(base.casefold(), UNIFORM) if modern else UNIFORM
    return _BY_SAMPLER_AND_SCHEDULE.get((base.casefold(), schedule.casefold()))


# ComfyUI's schedules that, for euler on a flow-matching model, give what sdtui's "FlowMatch Euler"
# runs. The rule: on a flow model (FLUX, SD3, Qwen-Image, Z-Image...) ComfyUI's sigmas are the
# model's shifted sigmas at evenly spaced timesteps; "simple" and "sgm_uniform" take them from 1 down
# to 1/steps, which is the linspace(1, 1/steps) the diffusers pipelines pass FlowMatchEulerDiscrete;
# "normal" spaces them down to the smallest sigma instead, the same curve ending a step lower; and
# Flux2Scheduler (no schedule name, read as None) computes FLUX.2's own resolution-dependent shift,
# as the diffusers FLUX.2 pipeline does. Other schedules (karras, beta...) have no exact equivalent on a
# flow model: diffusers' FlowMatchEulerDiscreteScheduler spans them between the pipeline's first and last
# shifted sigma, ComfyUI between the model's sigma_max and sigma_min (its karras, exponential and beta).
COMFY_FLOW_SCHEDULES = {None, "simple", "normal", "sgm_uniform"}
# The same schedules with ComfyUI's multistep solvers on a flow model are the same solvers in diffusers
# on the model's flow sigmas. Close, not equal: ComfyUI's sample_dpmpp_2m and uni_pc.py step in -log(sigma)
# (and uni_pc defaults to its bh1 variant), diffusers' in log((1 - sigma) / sigma); the first order step
# is the same.
COMFY_FLOW_SAMPLERS = {"euler": "FlowMatch Euler", "uni_pc": "FlowMatch UniPC", "uni_pc_bh2": "FlowMatch UniPC",
                       "dpmpp_2m": "FlowMatch DPM++ 2M"}


def scheduler_from_comfyui(sampler_name: str, scheduler: str | None, flow: bool = False) -> SchedulerSpec | None:
    """ComfyUI's KSampler ``sampler_name`` and ``scheduler``; early versions prefixed "sample_", and
    "_gpu" only says where the noise is drawn. ``flow``: the graph runs a flow-matching model, where
    euler is FlowMatch Euler, uni_pc FlowMatch UniPC and dpmpp_2m FlowMatch DPM++ 2M (COMFY_FLOW_SAMPLERS)."""
    name = sampler_name.strip().casefold().removeprefix("sample_").removesuffix("_gpu")
    if flow:
        key = scheduler.strip().casefold() if isinstance(scheduler, str) and scheduler else None
        ours = COMFY_FLOW_SAMPLERS.get(name)
        return _BY_KEY[ours.casefold()] if ours and key in COMFY_FLOW_SCHEDULES else None
    base = COMFY_SAMPLERS.get(name)
    schedule = COMFY_SCHEDULES.get((scheduler or "normal").strip().casefold())
    if base is None or schedule is None:
        return None
    return _BY_SAMPLER_AND_SCHEDULE.get((base.casefold(), schedule.casefold()))


# Forge writes A1111's "Sampler" and "Schedule type" for FLUX and other flow models too (its backend
# samples as ComfyUI does): Euler with these schedules is FlowMatch Euler there, by the rule above;
# "Automatic" and "Uniform" are Euler's own default, ComfyUI's "normal".
A1111_FLOW_SCHEDULES = {None, "automatic", "uniform", "simple", "normal", "sgm uniform"}


def scheduler_from_a1111_flow(sampler: str, schedule_type: str | None) -> SchedulerSpec | None:
    """An A1111-style ``Sampler`` and ``Schedule type`` written for a flow-matching model (Forge's FLUX)."""
    base, suffix = split_a1111_sampler(sampler)
    schedule = (schedule_type or suffix or "").strip().casefold() or None
    if base.casefold() in ("euler", "k_euler") and schedule in A1111_FLOW_SCHEDULES:
        return _BY_KEY["flowmatch euler"]
    return None


def scheduler_from_invokeai(name: str) -> SchedulerSpec | None:
    mapped = INVOKEAI_SCHEDULERS.get(name.strip().casefold())
    return _BY_KEY[mapped.casefold()] if mapped else None


def build_scheduler(spec: SchedulerSpec, base_config: dict[str, Any]):
    """A new scheduler of ``spec``'s kind, configured from the model's own scheduler config."""
    import diffusers

    cls = getattr(diffusers, spec.diffusers_class)
    options = dict(spec.options)
    if options.get("use_flow_sigmas"):  # FlowMatchEulerDiscreteScheduler's shift is their flow_shift
        options.setdefault("flow_shift", base_config.get("shift", 1.0))
    return cls.from_config(dict(base_config), **options)
