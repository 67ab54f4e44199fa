"""InvokeAI's metadata: ``invokeai_metadata`` (3.x and later), and 2.x's ``sd-metadata`` JSON
and ``Dream`` command line."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from tui.engine.schedulers import UNIFORM, scheduler_from_a1111, scheduler_from_invokeai
from tui.store.images import MetadataError
from tui.store.importers.draft import Draft, Imported

# InvokeAI 2 wrote the negative prompt in square brackets inside the prompt.
_BRACKETED = re.compile(r"\[([^\[\]]*)\]")


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        raise MetadataError(f"the {what} metadata is not valid JSON") from None
    if not isinstance(data, dict):
        raise MetadataError(f"the {what} metadata is not an object")
    return data


def _model_name(model: Any) -> str:
    if isinstance(model, dict):
        return str(model.get("name") or model.get("model_name") or "")
    return str(model or "")


def invokeai_import(metadata_json: str) -> Imported:
    meta = _json_object(metadata_json, "InvokeAI")
    draft = Draft("InvokeAI")
    draft.take_from(meta, prompt="positive_prompt", negative_prompt="negative_prompt", steps="steps",
                    guidance="cfg_scale", seed="seed")
    draft.take_size(meta.get("width"), meta.get("height"))
    if "scheduler" in meta:
        draft.take_scheduler(scheduler_from_invokeai(str(meta["scheduler"])), str(meta["scheduler"]))
    if _model_name(meta.get("model")):
        draft.not_used(f"model {_model_name(meta.get('model'))}")
    if meta.get("loras"):
        draft.not_used("LoRAs")
    if isinstance(meta.get("strength"), (int, float)) and "img2img" in str(meta.get("generation_mode", "")):
        draft.not_used(f"denoising strength {meta['strength']}")
    return draft.finish()


def _split_negative(prompt: str) -> tuple[str, str]:
    negatives = [part.strip() for part in _BRACKETED.findall(prompt) if part.strip()]
    return _BRACKETED.sub("", prompt).strip(), ", ".join(negatives)


def invokeai2_import(sd_metadata: str | None, dream: str | None) -> Imported:
    """InvokeAI 2.x: the JSON when it is there, else the ``Dream`` command line."""
    draft = Draft("InvokeAI")
    if sd_metadata:
        meta = _json_object(sd_metadata, "InvokeAI 2")
        image = meta.get("image") if isinstance(meta.get("image"), dict) else {}
        prompts = image.get("prompt")
        text = prompts[0].get("prompt", "") if isinstance(prompts, list) and prompts and \
            isinstance(prompts[0], dict) else str(prompts or "")
        positive, negative = _split_negative(text)
        values = {"steps": image.get("steps"), "guidance": image.get("cfg_scale"), "seed": image.get("seed"),
                  "sampler": image.get("sampler")}
        width, height = image.get("width"), image.get("height")
        if meta.get("model_weights"):
            draft.not_used(f"model {meta['model_weights']}")
    else:
        try:
            words = shlex.split(dream or "")
        except ValueError:
            raise MetadataError("the InvokeAI Dream metadata is not a readable command line") from None
        positive, negative = _split_negative(words[0] if words else "")
        flags = dict(zip(words[1::2], words[2::2]))
        values = {"steps": flags.get("-s"), "guidance": flags.get("-C"), "seed": flags.get("-S"),
                  "sampler": flags.get("-A")}
        width, height = flags.get("-W"), flags.get("-H")
    draft.take("prompt", positive)
    draft.take("negative_prompt", negative)
    draft.take_from(values, steps="steps", guidance="guidance", seed="seed")
    if width is not None and height is not None:
        draft.take_size(width, height)
    if values["sampler"]:
        draft.take_scheduler(scheduler_from_invokeai(str(values["sampler"])), str(values["sampler"]))
    return draft.finish()


def novelai_import(description: str | None, comment: str) -> Imported:
    """NovelAI: the prompt in ``Description``, the settings as JSON in ``Comment``."""
    meta = _json_object(comment, "NovelAI")
    draft = Draft("NovelAI")
    draft.take("prompt", meta.get("prompt") or description)
    draft.take_from(meta, negative_prompt="uc", steps="steps", guidance="scale", seed="seed")
    if meta.get("width") is not None and meta.get("height") is not None:
        draft.take_size(meta.get("width"), meta.get("height"))
    if meta.get("sampler"):
        schedule = {"native": UNIFORM}.get(str(meta.get("noise_schedule", "native")), meta.get("noise_schedule"))
        draft.take_scheduler(scheduler_from_a1111(str(meta["sampler"]), str(schedule)), str(meta["sampler"]))
    draft.not_used("NovelAI's own model")
    return draft.finish()
