"""The LoRA and embedding picker: what the models folder's ``loras/`` and ``embeddings/`` hold,
with the family each fits; Enter puts ``<lora:name:0.8>`` (or an embedding's name) into the prompt.

The folders are read in a thread: each file's header is a small read, but there may be hundreds.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text

from tui.engine.memory import format_bytes
from tui.engine.networks import EMBEDDINGS, LORAS, NetworkFile, lora_tag, network_files
from tui.client.screens.picker import PickerScreen
from tui.text import plural, visible

PICKED_WEIGHT = 0.8  # a LoRA at full weight often overpowers a prompt; 0.8 is the usual start


def prompt_text(item: NetworkFile) -> str:
    """What the picker puts into the prompt for ``item``."""
    return lora_tag(item.name, PICKED_WEIGHT) if item.kind == LORAS else item.name


def fits(item: NetworkFile, model_family: str) -> bool | None:
    """Whether ``item`` fits a model of ``model_family`` (a label such as "SD 1.x"); None when
    either is unknown."""
    if not model_family or not item.family or item.family.startswith("width"):
        return None
    return item.family == model_family


class NetworkPickerScreen(PickerScreen):
    TITLE = "[b]LoRAs and embeddings[/b]: Enter puts the highlighted one into the prompt, Esc closes"
    PLACEHOLDER = "filter by name or family"
    COLUMNS = ("", "name", "kind", "family", "size")

    def __init__(self, models_dir: Path, model_family: str, allow_pickle: bool = False) -> None:
        super().__init__()
        self.models_dir, self.model_family, self.allow_pickle = models_dir, model_family, allow_pickle

    def looking_in(self) -> str:
        return f"looking in {self.models_dir / LORAS} and {self.models_dir / EMBEDDINGS}…"

    def scan(self) -> tuple[list[NetworkFile], str]:
        items = [*network_files(self.models_dir / LORAS, LORAS, self.allow_pickle),
                 *network_files(self.models_dir / EMBEDDINGS, EMBEDDINGS, self.allow_pickle)]
        # What fits the loaded model first, then what may, then the rest; by name within each.
        order = {True: 0, None: 1, False: 2}
        items.sort(key=lambda i: (order[fits(i, self.model_family)], i.name.casefold()))
        loras = sum(1 for i in items if i.kind == LORAS)
        model = f"the loaded model is {self.model_family}" if self.model_family else "no model is loaded yet"
        return items, (f"{plural(loras, 'LoRA')} in {self.models_dir / LORAS}, {plural(len(items) - loras, 'embedding')} in "
                       f"{self.models_dir / EMBEDDINGS}; {model}. ✓ fits it, ✗ is for another family. "
                       f"A LoRA goes in as <lora:name:{PICKED_WEIGHT:g}>: edit the weight in the prompt.")

    def shown(self, text: str, needle: str) -> list[NetworkFile]:
        return [i for i in self.items if not needle or needle in f"{i.name} {i.label} {i.kind}".casefold()]

    def row(self, item: NetworkFile) -> tuple:
        fit = fits(item, self.model_family)
        mark = Text("✓", style="green") if fit else Text("✗", style="red") if fit is False else Text("")
        name = Text(visible(item.name))
        if item.problem:
            name.append(f"  ({visible(item.problem)})", style="dim")
        size = format_bytes(item.path.stat().st_size) if item.path.exists() else ""
        return mark, name, "LoRA" if item.kind == LORAS else "embedding", item.label, size

    def result(self, item: NetworkFile) -> str:
        return prompt_text(item)
