"""What an import collects: the request fields it could read, each checked on its own, and
one note for everything it could not use. No single field refuses the whole import."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tui.engine.request import GenerationRequest, InvalidRequest, validate_request
from tui.engine.schedulers import SchedulerSpec
from tui.store.images import MetadataError


@dataclass
class Imported:
    values: dict[str, Any]  # checked request fields found in the image; the rest stay as they are
    source: str  # sdtui | A1111 | Fooocus | InvokeAI | ComfyUI | NovelAI
    notes: list[str] = field(default_factory=list)
    lora_hashes: dict[str, str] = field(default_factory=dict)  # A1111's "Lora hashes": tag name -> short hash
    quantization: str = ""  # sdtui's "Quantization": the GGUF transformer's ("Q8_0"), not a request field

    @property
    def request(self) -> GenerationRequest:
        """The fields read, with the request defaults for the others."""
        if "prompt" not in self.values:
            raise MetadataError(f"the {self.source} metadata has no prompt sdtui could read")
        return GenerationRequest(**self.values)


class Draft:
    def __init__(self, source: str):
        self.source = source
        self.values: dict[str, Any] = {}
        self.notes: list[str] = []
        self.unused: list[str] = []

    def take(self, name: str, value: Any) -> None:
        """Keep ``value`` for request field ``name`` if it passes the request's own rule;
        otherwise note the rule and leave the field as it is."""
        if value is None:
            return
        raw = {"prompt": value} if name == "prompt" else {"prompt": "x", name: value}
        try:
            self.values[name] = getattr(validate_request(raw), name)
        except InvalidRequest as error:
            if name == "prompt":
                self.notes.append("the image has no prompt sdtui could read; the prompt is left as it is")
            else:
                self.notes.append(f"{error}; the current {name.replace('_', ' ')} is kept")

    def take_from(self, source: Any, **keys: str) -> None:
        """Take each request field (a keyword) from ``source`` (anything with ``get``) under the
        key the tool writes it with: ``take_from(meta, guidance="cfg_scale")``."""
        for name, key in keys.items():
            self.take(name, source.get(key))

    def take_size(self, width: Any, height: Any) -> None:
        """Both or neither: half a size is no use."""
        try:
            checked = validate_request({"prompt": "x", "width": width, "height": height})
        except InvalidRequest as error:
            self.notes.append(f"{error}; the current size is kept")
        else:
            self.values["width"], self.values["height"] = checked.width, checked.height

    def take_scheduler(self, spec: SchedulerSpec | None, asked: str) -> None:
        if spec is not None:
            self.values["scheduler"] = spec.name
        elif asked:
            self.notes.append(f"sampler {asked} has no exact equivalent in sdtui; the current scheduler is kept")

    def not_used(self, what: str) -> None:
        """Something the image was made with that sdtui does not apply (a model, LoRAs, a second pass)."""
        if what and what not in self.unused:
            self.unused.append(what)

    def finish(self) -> Imported:
        if not self.values:
            raise MetadataError(f"the {self.source} metadata holds no prompt or setting sdtui can use")
        notes = list(self.notes)
        if self.unused:
            notes.append("not applied here: " + ", ".join(self.unused))
        return Imported(dict(self.values), self.source, notes)
