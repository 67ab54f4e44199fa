"""Reading generation parameters from other tools' images: sdtui's own chunk, A1111 (and Forge,
SD.Next, civitai), Fooocus, ComfyUI, InvokeAI 2 and later, and NovelAI; PNG text chunks, or
the EXIF comment A1111 writes into JPEG and WebP files.

An import keeps every field it can read and lists what it could not use in its notes; it is
refused only when the file holds nothing usable, in one sentence that says what was found.
"""

from __future__ import annotations

import json
from pathlib import Path

from tui.engine.networks import parse_hashes
from tui.engine.request import GenerationRequest, InvalidRequest, validate_request
from tui.store.images import PARAMETERS_KEY, SDTUI_KEY, MetadataError, parse_parameters
from tui.store.importers.a1111 import a1111_import, parameters_import
from tui.store.importers.comfyui import comfyui_import
from tui.store.importers.draft import Imported
from tui.store.importers.invokeai import invokeai2_import, invokeai_import, novelai_import

COMFY_KEY = "prompt"
WORKFLOW_KEY = "workflow"  # ComfyUI's editor graph
INVOKE_KEY = "invokeai_metadata"
_EXIF_USER_COMMENT = 0x9286
_EXIF_IFD = 0x8769

__all__ = ["Imported", "MetadataError", "import_png", "read_request", "request_from_parameters"]


def _user_comment(raw: bytes | str) -> str:
    """EXIF UserComment: an 8-byte charset header, then the text (A1111 writes UTF-16, big-endian)."""
    if isinstance(raw, str):
        return raw
    header, body = raw[:8], raw[8:]
    if header.startswith(b"UNICODE"):
        return body.decode("utf-16-be" if body[:1] == b"\0" else "utf-16-le", errors="replace")
    return body.decode("utf-8", errors="replace")


def read_chunks(path: Path) -> tuple[dict[str, str], tuple[int, int]]:
    """The text an image carries (PNG chunks, or the EXIF comment as ``parameters``), and its size."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()  # PNG text chunks after the image data are read only once the data is
        chunks = {str(k): v for k, v in getattr(image, "text", {}).items() if isinstance(v, str)}
        comment = image.getexif().get_ifd(_EXIF_IFD).get(_EXIF_USER_COMMENT)
        if comment and PARAMETERS_KEY not in chunks:
            chunks[PARAMETERS_KEY] = _user_comment(comment).rstrip("\0")
        return chunks, image.size


def _own(payload: str) -> Imported:
    data = json.loads(payload)
    request = validate_request({**data["request"], "seed": data["seed"], "count": 1})
    return Imported(request.to_dict(), "sdtui")


def import_png(path: Path) -> Imported:
    """The settings an image was made with, from whichever tool's metadata it carries."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MetadataError(f"{path}: no such file")
    try:
        chunks, size = read_chunks(path)
    except OSError as error:
        raise MetadataError(f"{path.name}: cannot read it as an image ({error})") from None
    damaged = []
    found = None
    if SDTUI_KEY in chunks:
        try:
            found = _own(chunks[SDTUI_KEY])
        except (ValueError, KeyError, TypeError, InvalidRequest):
            damaged.append("its sdtui metadata is damaged; the A1111 text was read instead")
    found = found or _dispatch(chunks, size)
    if found is None:
        raise MetadataError(f"{path.name}: no generation parameters found in its metadata (looked for sdtui, "
                            "A1111, Fooocus, ComfyUI, InvokeAI and NovelAI)")
    found.notes[:0] = damaged
    settings = _settings(chunks.get(PARAMETERS_KEY))
    found.lora_hashes = parse_hashes(settings.get("Lora hashes", ""))
    found.quantization = settings.get("Quantization", "")
    return found


def _settings(parameters: str | None) -> dict[str, str]:
    """The settings line of sdtui's, A1111's and civitai's text: ``Lora hashes`` for the prompt's LoRA names,
    sdtui's ``Quantization``."""
    try:
        return parse_parameters(parameters).settings if parameters else {}
    except MetadataError:
        return {}


def _dispatch(chunks: dict[str, str], size: tuple[int, int]) -> Imported | None:
    if PARAMETERS_KEY in chunks:
        return parameters_import(chunks[PARAMETERS_KEY])
    if INVOKE_KEY in chunks:
        return invokeai_import(chunks[INVOKE_KEY])
    if "sd-metadata" in chunks or "Dream" in chunks:
        return invokeai2_import(chunks.get("sd-metadata"), chunks.get("Dream"))
    if COMFY_KEY in chunks or WORKFLOW_KEY in chunks:
        return comfyui_import(chunks.get(COMFY_KEY), size, chunks.get(WORKFLOW_KEY))
    if chunks.get("Software") == "NovelAI" and "Comment" in chunks:
        return novelai_import(chunks.get("Description"), chunks["Comment"])
    return None


def read_request(path: Path) -> GenerationRequest:
    return import_png(path).request


def request_from_parameters(text: str) -> GenerationRequest:
    """A request from A1111 ``parameters`` text alone, with defaults for what it lacks."""
    return a1111_import(text).request
