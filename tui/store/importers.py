"""Reading generation parameters from any PNG: sdtui's own chunk, A1111 ``parameters``,
ComfyUI's ``prompt`` graph and InvokeAI's ``invokeai_metadata``.

Each reader turns what it finds into a checked GenerationRequest; anything missing or
unusable is one clear sentence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui.engine.request import SEED_MAX, GenerationRequest, InvalidRequest, validate_request
from tui.engine.schedulers import find_scheduler
from tui.store.images import PARAMETERS_KEY, SDTUI_KEY, MetadataError, png_text, request_from_parameters

COMFY_KEY = "prompt"
INVOKE_KEY = "invokeai_metadata"

# ComfyUI (sampler_name, scheduler) and InvokeAI scheduler names onto sdtui's.
_COMFY_SAMPLERS = {"euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "dpmpp_2m": "DPM++ 2M",
                   "dpmpp_2m_sde": "DPM++ 2M SDE Karras", "ddim": "DDIM", "uni_pc": "UniPC", "uni_pc_bh2": "UniPC",
                   "lms": "LMS"}
_INVOKE_SCHEDULERS = {"euler": "Euler", "euler_a": "Euler a", "heun": "Heun", "dpmpp_2m": "DPM++ 2M",
                      "dpmpp_2m_k": "DPM++ 2M Karras", "dpmpp_2m_sde_k": "DPM++ 2M SDE Karras", "ddim": "DDIM",
                      "pndm": "PNDM", "unipc": "UniPC", "lms": "LMS", "lms_k": "LMS Karras"}


@dataclass
class Imported:
    request: GenerationRequest
    source: str  # sdtui | A1111 | InvokeAI | ComfyUI
    notes: list[str] = field(default_factory=list)


def _seed_in_range(raw: dict[str, Any], notes: list[str]) -> None:
    """Other tools use 64-bit seeds and other noise generators; an out-of-range seed cannot
    reproduce their image here, so it is dropped with a note rather than refused."""
    seed = raw.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and not 0 <= seed <= SEED_MAX:
        notes.append(f"seed {seed} is outside sdtui's 0..{SEED_MAX}; a random seed will be used")
        raw["seed"] = None


def _checked(raw: dict[str, Any], source: str) -> GenerationRequest:
    try:
        return validate_request(raw)
    except InvalidRequest as error:
        raise MetadataError(f"the {source} metadata is not usable: {error}") from None


def _comfy_text(graph: dict[str, Any], link: Any) -> str:
    """Follow a ``[node_id, output]`` link to the text of a CLIPTextEncode node."""
    if not isinstance(link, list) or not link:
        return ""
    node = graph.get(str(link[0]), {})
    inputs = node.get("inputs", {})
    text = inputs.get("text", inputs.get("text_g", ""))
    if isinstance(text, list):  # the text itself comes from another node
        return _comfy_text(graph, text)
    return text if isinstance(text, str) else ""


def comfyui_request(prompt_json: str, notes: list[str] | None = None) -> GenerationRequest:
    try:
        graph = json.loads(prompt_json)
    except ValueError:
        raise MetadataError("the ComfyUI prompt metadata is not valid JSON") from None
    if not isinstance(graph, dict):
        raise MetadataError("the ComfyUI prompt metadata is not a node graph")
    samplers = [n for n in graph.values() if isinstance(n, dict) and "KSampler" in str(n.get("class_type", ""))]
    if not samplers:
        raise MetadataError("the ComfyUI graph has no KSampler node to read settings from")
    inputs = samplers[0].get("inputs", {})
    raw: dict[str, Any] = {
        "prompt": _comfy_text(graph, inputs.get("positive")),
        "negative_prompt": _comfy_text(graph, inputs.get("negative")),
        "steps": inputs.get("steps", 20),
        "guidance": inputs.get("cfg", 7.0),
        "seed": inputs.get("seed", inputs.get("noise_seed")),
    }
    sampler = _COMFY_SAMPLERS.get(str(inputs.get("sampler_name", "")))
    if sampler:
        karras = inputs.get("scheduler") == "karras" and find_scheduler(f"{sampler} Karras")
        raw["scheduler"] = karras.name if karras else sampler
    latent = inputs.get("latent_image")
    if isinstance(latent, list):
        size = graph.get(str(latent[0]), {}).get("inputs", {})
        if "width" in size and "height" in size:
            raw["width"], raw["height"] = size["width"], size["height"]
    _seed_in_range(raw, notes if notes is not None else [])
    return _checked(raw, "ComfyUI")


def invokeai_request(metadata_json: str, notes: list[str] | None = None) -> GenerationRequest:
    try:
        meta = json.loads(metadata_json)
    except ValueError:
        raise MetadataError("the InvokeAI metadata is not valid JSON") from None
    if not isinstance(meta, dict):
        raise MetadataError("the InvokeAI metadata is not an object")
    raw: dict[str, Any] = {"prompt": meta.get("positive_prompt", ""),
                           "negative_prompt": meta.get("negative_prompt", "")}
    for ours, theirs in (("steps", "steps"), ("guidance", "cfg_scale"), ("seed", "seed"), ("width", "width"),
                         ("height", "height")):
        if theirs in meta:
            raw[ours] = meta[theirs]
    scheduler = _INVOKE_SCHEDULERS.get(str(meta.get("scheduler", "")))
    if scheduler:
        raw["scheduler"] = scheduler
    _seed_in_range(raw, notes if notes is not None else [])
    return _checked(raw, "InvokeAI")


def import_png(path: Path) -> Imported:
    """The request an image was made with, from whichever tool's metadata it carries."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MetadataError(f"{path}: no such file")
    try:
        chunks = png_text(path)
    except OSError as error:
        raise MetadataError(f"{path.name}: cannot read it as a PNG ({error})") from None
    notes: list[str] = []
    if SDTUI_KEY in chunks:
        try:
            data = json.loads(chunks[SDTUI_KEY])
            return Imported(validate_request({**data["request"], "seed": data["seed"], "count": 1}), "sdtui")
        except (ValueError, KeyError, TypeError, InvalidRequest):
            notes.append("its sdtui metadata is damaged; read the A1111 text instead")
    if PARAMETERS_KEY in chunks:
        return Imported(request_from_parameters(chunks[PARAMETERS_KEY]), "A1111", notes)
    if INVOKE_KEY in chunks:
        return Imported(invokeai_request(chunks[INVOKE_KEY], notes), "InvokeAI", notes)
    if COMFY_KEY in chunks:
        return Imported(comfyui_request(chunks[COMFY_KEY], notes), "ComfyUI", notes)
    raise MetadataError(f"{path.name}: no generation parameters found in its metadata (looked for sdtui, "
                        "A1111 parameters, InvokeAI and ComfyUI chunks)")


def read_request(path: Path) -> GenerationRequest:
    return import_png(path).request
