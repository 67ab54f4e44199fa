"""AUTOMATIC1111's ``parameters`` text (also written by Forge, SD.Next, civitai and sdtui) and
Fooocus' JSON, which Fooocus stores under the same key."""

from __future__ import annotations

import ast
import json
from typing import Any

from tui.engine.schedulers import scheduler_from_a1111, scheduler_from_a1111_flow, scheduler_from_comfyui
from tui.store.images import MetadataError, parse_parameters
from tui.store.importers.draft import Draft, Imported

# Settings that change the picture but that sdtui does not apply, as the import notes name them.
_NOT_APPLIED = {
    "Model": "model {}", "VAE": "VAE {}", "Clip skip": "clip skip {}", "Hires upscale": "hires fix (upscale {})",
    "Denoising strength": "denoising strength {}", "Refiner": "refiner {}", "Variation seed": "variation seed {}",
    "Face restoration": "face restoration {}", "ADetailer model": "ADetailer {}",
    "Template": "the dynamic-prompts template",
}
# LoRA tags and embedding names stay in the prompt, where sdtui reads them as A1111 does.


def a1111_import(text: str) -> Imported:
    parsed = parse_parameters(text)
    settings = parsed.settings
    draft = Draft("A1111")
    draft.take("prompt", parsed.prompt)
    draft.take("negative_prompt", parsed.negative_prompt)
    draft.take_from(settings, steps="Steps", seed="Seed")
    flow = _forge_flow(settings, draft)
    size = settings.get("Size", "")
    if "x" in size:
        draft.take_size(*(part.strip() for part in size.split("x", 1)))
    if "Sampler" in settings:
        schedule = settings.get("Schedule type")
        spec = scheduler_from_a1111_flow(settings["Sampler"], schedule) if flow else \
            scheduler_from_a1111(settings["Sampler"], schedule, settings.get("Version"))
        asked = settings["Sampler"] + (f" with the {schedule} schedule" if schedule and spec is None else "")
        draft.take_scheduler(spec, asked)
    for key, label in _NOT_APPLIED.items():
        if settings.get(key) and not (key == "Model" and settings.get("Version", "").startswith("sdtui")):
            draft.not_used(label.format(settings[key]) if key != "Template" else label)
    return draft.finish()


def _forge_flow(settings: dict[str, str], draft: Draft) -> bool:
    """Forge's fields for flow-matching models: "Distilled CFG Scale" is FLUX's distilled guidance
    (FLUX.1 dev runs with "CFG scale: 1" beside it), and "Shift" the shift of a model whose guidance
    is its CFG scale; Forge writes the one its model uses. Takes the guidance; True if either is there."""
    distilled, shift, cfg = settings.get("Distilled CFG Scale"), settings.get("Shift"), settings.get("CFG scale")
    if distilled is not None:
        draft.take("guidance", distilled)
        unused = f"; its CFG scale {cfg} is not used here" if cfg is not None and _number(cfg) != 1 else ""
        draft.notes.append(f"guidance is FLUX's distilled guidance (Distilled CFG Scale {distilled}){unused}")
    else:
        draft.take("guidance", cfg)
        if shift is not None and cfg is not None:
            draft.notes.append(f"guidance is the CFG scale ({cfg})")
    draft.take("shift", shift)
    return distilled is not None or shift is not None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def fooocus_import(data: dict[str, Any]) -> Imported:
    """Fooocus 2.2+ ``metadata_scheme: fooocus``: the user's own prompt, not the style-expanded one."""
    draft = Draft("Fooocus")
    draft.take_from(data, prompt="prompt", negative_prompt="negative_prompt", steps="steps",
                    guidance="guidance_scale", seed="seed")
    size = _pair(data.get("resolution"))
    if size:
        draft.take_size(*size)
    sampler = str(data.get("sampler", ""))  # Fooocus runs ComfyUI's samplers under their names
    schedule = str(data.get("scheduler", "normal"))
    draft.take_scheduler(scheduler_from_comfyui(sampler, schedule), f"{sampler} with the {schedule} schedule")
    if data.get("base_model"):
        draft.not_used(f"model {data['base_model']}")
    if data.get("styles") not in (None, "", "[]", []):
        draft.not_used(f"Fooocus styles {data['styles']}")
    if data.get("loras") not in (None, "", "[]", []):
        draft.not_used("LoRAs")
    return draft.finish()


def _pair(value: Any) -> tuple[Any, Any] | None:
    """Fooocus writes the resolution as the text "(768, 1280)": width, height."""
    try:
        parsed = ast.literal_eval(value) if isinstance(value, str) else value
    except (ValueError, SyntaxError):
        return None
    return tuple(parsed) if isinstance(parsed, (list, tuple)) and len(parsed) == 2 else None


def parameters_import(text: str) -> Imported:
    """The ``parameters`` chunk: A1111 text, or Fooocus' JSON under the same key."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            data = None
        if isinstance(data, dict):
            if "prompt" in data and ("guidance_scale" in data or data.get("metadata_scheme") == "fooocus"):
                return fooocus_import(data)
            raise MetadataError("the parameters chunk holds JSON from a tool sdtui does not know")
    return a1111_import(text)
