"""What the loaded model's family makes of the settings: which samplers it offers, what its guidance
is called (or that it takes none), whether it reads a negative prompt, and the log's sentences for
the settings that do not apply to it. Pure functions of the family registry and the settings, so
the panel, the prompt box and the log say the same thing."""

from __future__ import annotations

from dataclasses import dataclass

from tui.engine.families import CFG, DISTILLED, NO_GUIDANCE, TRUE_CFG, ModelFamily
from tui.engine.schedulers import scheduler_names

FLOW_NAMES = frozenset(scheduler_names(flow=True))

# The guidance field's label per kind, as Forge and ComfyUI users know them ("Distilled CFG Scale"
# is Forge's name for FLUX's guidance; Qwen-Image's pipeline calls its own true_cfg_scale).
GUIDANCE_LABELS = {CFG: "Guidance", DISTILLED: "Distilled CFG", TRUE_CFG: "True CFG", NO_GUIDANCE: "Guidance"}


@dataclass(frozen=True)
class FamilyFields:
    label: str  # the model's family, as the log names it
    samplers: tuple[str, ...]
    default_sampler: str
    guidance_label: str
    takes_guidance: bool
    negative_prompt: bool
    shift: bool  # its samplers are flow-matching ones, which take a shift


def fields_for(model: ModelFamily | None) -> FamilyFields:
    """The fields of ``model``'s family; before any model is known, every sampler and field but the
    shift, which only flow-matching models take."""
    if model is None:
        return FamilyFields("", tuple(scheduler_names()), "", GUIDANCE_LABELS[CFG], True, True, False)
    family, guidance = model.family, model.guidance  # a variant's own where it has one (FLUX.1 schnell: none)
    return FamilyFields(model.label, family.samplers, model.defaults.scheduler, GUIDANCE_LABELS[guidance.kind],
                        guidance.kind != NO_GUIDANCE, family.negative_prompt,
                        any(name in FLOW_NAMES for name in family.samplers))


def sampler_for(fields: FamilyFields, scheduler: str) -> str | None:
    """The sampler to switch to when ``scheduler`` is not one the family offers (None: it is)."""
    if scheduler in fields.samplers:
        return None
    return fields.default_sampler or fields.samplers[0]


def unused_settings(fields: FamilyFields, negative_prompt: str, guidance: float) -> list[str]:
    """One sentence per setting the loaded family will not use, for the log."""
    lines = []
    if negative_prompt.strip() and not fields.negative_prompt:
        lines.append(f"negative prompt: {fields.label} models do not read one; it is kept for other models")
    if not fields.takes_guidance and guidance:
        lines.append(f"guidance: {fields.label} models take none (distilled to run without it); "
                     f"{guidance:g} is kept for other models")
    return lines
