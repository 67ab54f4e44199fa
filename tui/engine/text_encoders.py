"""The loaded pipeline's text encoders: what they weigh, where they are now, and how they come back.

While images denoise they can be elsewhere (device.choose_text_encoder_residency decides): on cuda
they wait in RAM; on mps and the CPU they are dropped and read again from the folder the pipeline
came from. Every pipeline sharing the components (the image-to-image and edit siblings made with
``from_pipe``) changes with the loaded one, so none keeps a dropped encoder alive.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Callable

from tui.engine.device import DROP, KEEP, TO_RAM
from tui.engine.memory import format_bytes, release_device_memory
from tui.engine.models import LocalModel
from tui.engine.weights import module_bytes, own_aligned_memory

log = logging.getLogger("tui.engine")
ON_DEVICE, IN_RAM, ON_DISK = "on the device", "in RAM", "on disk"


class TextEncoders:
    """``pipelines()``: the loaded pipeline first, then its siblings; ``names``: its text encoder
    components; ``parts``: the folder they can be read from again (None: they cannot)."""

    def __init__(self, pipelines: Callable[[], list], names: list[str], device: str, dtype: str,
                 parts: LocalModel | None, use_safetensors: bool | None = True):
        pipe = pipelines()[0]
        self._pipelines = pipelines
        self._classes = {name: type(getattr(pipe, name)) for name in names}
        self.device, self.dtype = device, dtype
        self.parts, self._use_safetensors = parts, use_safetensors
        self.bytes = sum(module_bytes(getattr(pipe, name)) for name in names)
        self.place = ON_DEVICE

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._classes)

    @property
    def reloadable(self) -> bool:
        return self.parts is not None

    @property
    def resident(self) -> bool:
        return self.place == ON_DEVICE

    def free(self, how: str) -> None:
        """Move them to RAM (TO_RAM) or drop them (DROP), and hand their memory back."""
        if not self.resident or how == KEEP or not self.names:
            return
        started = time.perf_counter()
        pipe = self._pipelines()[0]
        left = []
        if how == TO_RAM:
            for name in self.names:
                getattr(pipe, name).to("cpu")
            self.place = IN_RAM
        elif how == DROP:
            left = [weakref.ref(getattr(pipe, name)) for name in self.names]
            del pipe
            self._register(dict.fromkeys(self.names))
            self.place = ON_DISK
        # A full collection takes a quarter of a second with torch loaded: only for encoders still alive,
        # held in a reference cycle.
        release_device_memory(self.device, collect=any(ref() is not None for ref in left))
        log.info("text encoders %s: %s off the %s in %.2f s (%s)", "moved to RAM" if how == TO_RAM else "dropped",
                 format_bytes(self.bytes), self.device, time.perf_counter() - started, ", ".join(self.names))

    def bring_back(self) -> None:
        """Put them on the device again, for a prompt that is not in the cache."""
        if self.resident:
            return
        started = time.perf_counter()
        pipe = self._pipelines()[0]
        if self.place == IN_RAM:
            for name in self.names:
                getattr(pipe, name).to(self.device)
            whence = "from RAM"
        else:
            self._register({name: self._read(name) for name in self.names})
            whence = f"from {self.parts.folder}"
        self.place = ON_DEVICE
        log.info("text encoders back on the %s %s: %s in %.2f s", self.device, whence, format_bytes(self.bytes),
                 time.perf_counter() - started)

    def _register(self, modules: dict) -> None:
        for pipe in self._pipelines():
            pipe.register_modules(**modules)

    def _read(self, name: str):
        """The component as the pipeline's loader read it: its folder, variant and dtype."""
        import torch
        from transformers import PreTrainedModel

        cls = self._classes[name]
        folder = self.parts.folder / name
        variant = self.parts.variant
        if variant and not any(f".{variant}." in file.name for file in folder.iterdir()):
            variant = None  # diffusers loads a component without the variant's files as it is
        dtype = {("dtype" if issubclass(cls, PreTrainedModel) else "torch_dtype"): getattr(torch, self.dtype)}
        module = cls.from_pretrained(str(self.parts.folder), subfolder=name, variant=variant, local_files_only=True,
                                     use_safetensors=self._use_safetensors, **dtype)
        module = module.to(self.device).eval()
        if self.device == "cpu":
            own_aligned_memory([module])
        return module
