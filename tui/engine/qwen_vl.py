"""Qwen2VLProcessor without torchvision: the Qwen-Image editing pipelines' processor component.

transformers 5 type-checks every attribute of a processor, Qwen2VLProcessor's video_processor too
even when it is None, against a class it only exports when torchvision is installed, so without
torchvision Qwen2VLProcessor can neither be built nor loaded (AttributeError '_extra_content'). The
editing pipelines read only its image processor and tokenizer: a subclass without the video slot
loads the same files (the image processor falls back to its PIL implementation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

QWEN2VL_PROCESSOR = ["transformers", "Qwen2VLProcessor"]


def processor_class():
    """Qwen2VLProcessor, or without torchvision a subclass without its video_processor slot."""
    from transformers import Qwen2VLProcessor
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        return Qwen2VLProcessor

    class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    return ImageOnlyQwen2VLProcessor


def processor_components(folder: Path, components: Mapping[str, Any]) -> dict[str, Any]:
    """The components of a pipeline folder diffusers cannot load here itself, loaded: its
    Qwen2VLProcessor when torchvision is missing; nothing otherwise."""
    from transformers.utils import is_torchvision_available

    loaded = {}
    for name, spec in components.items():
        if list(spec or []) == QWEN2VL_PROCESSOR and not is_torchvision_available():
            loaded[name] = processor_class().from_pretrained(str(folder / name), local_files_only=True)
    return loaded
