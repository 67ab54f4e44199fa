"""PNG files with their generation parameters.

Each image carries an A1111-compatible ``parameters`` text chunk, which A1111, ComfyUI
loaders, InvokeAI, civitai and sdtui itself all read, plus the full request as JSON in
an ``sdtui`` chunk. The reader also turns other tools' ``parameters`` text back into a
request.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui import __version__
from tui.engine.img2img import HIRES_UPSCALER
from tui.engine.request import GenerationRequest
from tui.engine.schedulers import find_scheduler

PARAMETERS_KEY = "parameters"
SDTUI_KEY = "sdtui"
NEGATIVE_PREFIX = "Negative prompt:"

# One "Key: value" pair of an A1111 parameters line; a value is either JSON-quoted or runs to the next comma.
_PAIR = re.compile(r'\s*(\w[\w \-/+.]*?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def _quote(value: Any) -> str:
    text = str(value)
    if any(ch in text for ch in ',:\n"'):
        return json.dumps(text, ensure_ascii=False)
    return text


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _guidance_pairs(guidance: float, kind: str | None) -> list[tuple[str, str]]:
    """The guidance as Forge writes it: a distilled model's (FLUX dev) as "Distilled CFG Scale" beside
    "CFG scale: 1", the classifier-free guidance it did not run; others' as "CFG scale"."""
    if kind == "distilled":
        return [("CFG scale", "1"), ("Distilled CFG Scale", _number(guidance))]
    return [("CFG scale", _number(guidance))]


def format_parameters(request: GenerationRequest, seed: int, info: dict[str, Any] | None = None) -> str:
    """The A1111 ``parameters`` text for one image made with ``seed``."""
    info = info or {}
    spec = find_scheduler(request.scheduler)
    pairs = [
        ("Steps", request.steps),
        ("Sampler", spec.a1111_sampler if spec else request.scheduler),
        # A1111 1.9+ reads a missing schedule type as the sampler's default (Karras for DPM++ 2M).
        *((("Schedule type", spec.schedule),) if spec and spec.schedule else ()),
        *_guidance_pairs(request.guidance, info.get("guidance_kind")),
        ("Seed", seed),
        ("Size", f"{request.width}x{request.height}"),
    ]
    if request.shift:
        pairs.append(("Shift", _number(request.shift)))  # Forge's name for a flow model's shift
    if info.get("model"):
        pairs.append(("Model", info["model"]))
    if info.get("quantization"):  # a GGUF transformer's; readers of A1111's text skip keys they do not know
        pairs.append(("Quantization", info["quantization"]))
    if request.init_image or request.hires:
        pairs.append(("Denoising strength", _number(request.strength)))
    if request.hires:
        pairs += [("Hires upscale", _number(request.hires)), ("Hires upscaler", HIRES_UPSCALER)]
    for key, label in (("lora_hashes", "Lora hashes"), ("ti_hashes", "TI hashes")):
        if info.get(key):  # A1111's own keys, so civitai and A1111 find the LoRAs and embeddings used
            from tui.engine.networks import format_hashes  # LoRA files are read only by the engine's side

            pairs.append((label, format_hashes(info[key])))
    pairs.append(("Version", f"sdtui {__version__}"))
    lines = [request.prompt]
    if request.negative_prompt:
        lines.append(f"{NEGATIVE_PREFIX} {request.negative_prompt}")
    lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in pairs))
    if request.template and request.template != request.prompt:
        # A line of its own after the settings, as A1111's Dynamic Prompts extension writes it.
        lines.append(f"Template: {' '.join(request.template.splitlines())}")
    return "\n".join(lines)


@dataclass
class ParsedParameters:
    prompt: str
    negative_prompt: str = ""
    settings: dict[str, str] = field(default_factory=dict)


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return str(json.loads(value))
        except ValueError:
            return value[1:-1]
    return value


def _settings_line(line: str) -> dict[str, str] | None:
    pairs = _PAIR.findall(line)
    # A prompt line can hold a "key: value" by chance; a settings line has several, Steps among them.
    if len(pairs) < 3 or not any(key.strip() == "Steps" for key, _ in pairs):
        return None
    return {key.strip(): _unquote(value) for key, value in pairs}


# Lines the dynamic-prompts extension writes after the settings line.
_TRAILING = re.compile(r"^(Template|Negative Template): ?(.*)$")


def parse_parameters(text: str) -> ParsedParameters:
    """Split A1111 ``parameters`` text into prompt, negative prompt and the settings line
    (with any dynamic-prompts ``Template:`` lines after it)."""
    lines = text.strip("\n").split("\n")
    trailing: dict[str, str] = {}
    end = len(lines)
    while end > 1 and _TRAILING.match(lines[end - 1]):
        end -= 1
    if end < len(lines) and _settings_line(lines[end - 1]) is not None:
        trailing = dict(_TRAILING.match(line).groups() for line in lines[end:])
        lines = lines[:end]
    settings = _settings_line(lines[-1]) if lines else None
    if settings is not None:
        lines = lines[:-1]
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    target = prompt_lines
    for line in lines:
        if target is prompt_lines and line.startswith(NEGATIVE_PREFIX):
            target = negative_lines
            line = line[len(NEGATIVE_PREFIX):].lstrip(" ")
        target.append(line)
    settings = {**(settings or {}), **trailing} if settings is not None else {}
    return ParsedParameters("\n".join(prompt_lines).strip(), "\n".join(negative_lines).strip(), settings)


class MetadataError(ValueError):
    """A PNG has no parameters sdtui can use; the message says what was found."""


def png_text(path: Path) -> dict[str, str]:
    """All text chunks of a PNG (tEXt, zTXt, iTXt)."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()  # text chunks after the image data are read only once the data is
        return {str(k): str(v) for k, v in getattr(image, "text", {}).items()}


def write_png(path: Path, image, request: GenerationRequest, seed: int, index: int,
              info: dict[str, Any] | None = None) -> None:
    """Write ``image`` with both chunks and flush it to disk."""
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    meta.add_text(PARAMETERS_KEY, format_parameters(request, seed, info))
    payload = {"request": request.to_dict(), "seed": seed, "index": index, "info": info or {},
               "version": __version__}
    meta.add_text(SDTUI_KEY, json.dumps(payload, ensure_ascii=False))
    with open(path, "wb") as handle:
        image.save(handle, format="PNG", pnginfo=meta)
        handle.flush()
        os.fsync(handle.fileno())


_ANGLE_TAG = re.compile(r"<[^<>]*>")
_WEIGHT = re.compile(r":\s*-?\d+(?:\.\d+)?")
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def prompt_slug(prompt: str, limit: int = 48) -> str:
    """A file-name-safe fragment of a prompt: lowercase ASCII letters, digits and dashes only,
    so no prompt can make a path leave the outputs folder or hit a reserved device name."""
    # Prompt syntax is not the subject: <lora:ink:0.8> tags and (word:1.2) weights stay out of the name.
    words_only = _WEIGHT.sub(" ", _ANGLE_TAG.sub(" ", prompt))
    ascii_text = unicodedata.normalize("NFKD", words_only).encode("ascii", "ignore").decode("ascii").lower()
    words = re.findall(r"[a-z0-9]+", ascii_text)
    slug = ""
    for word in words:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > limit:
            slug = slug or word[:limit]
            break
        slug = candidate
    if not slug or slug in _RESERVED:
        slug = f"image-{slug}" if slug else "image"
    return slug[:limit]
