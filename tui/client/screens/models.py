"""The model picker: every model already on this machine (Hugging Face cache, the models
folder, recently used, the demo) with its family, size and place, and below them the known
models not here yet, with their download size; each judged for this machine's memory. Type to
filter, or type a Hub id (or one file of a repository, owner/name/file.gguf) or a path that is not listed to
load (and if need be download) it.

The catalog is built in a thread: scanning a large cache reads many small files.
"""

from __future__ import annotations

import platform
from pathlib import Path

from rich.text import Text

from tui.engine.catalog import CatalogEntry, build_catalog
from tui.engine.getable import GET, getable
from tui.engine.device import choose_dtype, expected_device, local_dtype_facts
from tui.engine.download import hub_cache_dir
from tui.engine.estimate import gb
from tui.engine.fit import FITS, TIGHT, Budget, budget_from_sample, judge
from tui.engine.memory import MemorySample, format_bytes, sample_memory
from tui.engine.models import split_hub_file
from tui.client.screens.picker import PickerScreen
from tui.text import plural, visible


def _looks_like_model(text: str) -> bool:
    text = text.strip()
    if not text:
        return False
    return (Path(text).expanduser().exists() or (text.count("/") == 1 and not text.startswith(("/", ".", "~")))
            or split_hub_file(text) is not None)


TO_GET = "models to get"  # the heading row above them


class ModelPickerScreen(PickerScreen):
    TITLE = "[b]Models[/b]: Enter loads the highlighted one, Esc closes"
    PLACEHOLDER = "filter, or type a Hub id (owner/name) or a path to load it"
    # What decides a Mac first: at 80 columns the model, its memory verdict and its size show whole
    COLUMNS = ("", "model", "memory", "size", "family", "defaults", "where")

    def __init__(self, models_dir: Path, recent: list[str], current: str, dtype_setting: str = "auto",
                 device: str = "", memory: MemorySample | None = None, held_by_sdtui: int = 0,
                 known_models_file: Path | None = None, quantize: str = "none") -> None:
        """``memory``: the server's latest reading, where it gave one (else this process reads the
        system's); ``held_by_sdtui``: what its loaded model holds, given back before another loads;
        ``known_models_file``: the user's additions to the models to get; ``quantize``: the setting, which
        counts the parts it quantizes as they load at NF4's size."""
        super().__init__()
        self.models_dir, self.recent, self.current = models_dir, recent, current
        self.known_models_file = known_models_file
        self.dtype_setting = dtype_setting
        self.quantize = quantize
        self.device = device or expected_device("auto", "", platform.system())
        self.facts = local_dtype_facts()
        self.budget: Budget | None = budget_from_sample(self.device, memory or sample_memory("cpu"), held_by_sdtui)

    @property
    def entries(self) -> list[CatalogEntry]:
        return self.items

    def looking_in(self) -> str:
        return f"looking in the Hugging Face cache and {self.models_dir}…"

    def scan(self) -> tuple[list[CatalogEntry], str]:
        from tui.engine.download import remove_stale_partials

        if hub_cache_dir().is_dir():
            remove_stale_partials(hub_cache_dir())
        entries = build_catalog(self.models_dir, self.recent)
        to_get = getable(entries, self.known_models_file)
        return entries + to_get, (
            f"{plural(len(entries), 'model')} here, {len(to_get)} to get. Hugging Face cache: {hub_cache_dir()}. "
            f"Models folder: {self.models_dir} (put diffusers folders and .safetensors checkpoints there; set "
            "models_dir in config.toml to use another).")

    def shown(self, text: str, needle: str) -> list[CatalogEntry | str]:
        typed: list[CatalogEntry | str] = []
        if _looks_like_model(text) and not any(e.ref == text.strip() for e in self.items):
            typed.append(text.strip())
        matching = [e for e in self.items if not needle or needle in _searched(e).casefold()]
        to_get = sorted((e for e in matching if e.kind == GET), key=self._fit_order)
        return typed + [e for e in matching if e.kind != GET] + ([TO_GET, *to_get] if to_get else [])

    def row(self, item: CatalogEntry | str) -> tuple:
        if item is TO_GET:
            return "", Text(item, style="bold"), "", "", "", "", ""
        if isinstance(item, str):
            return "→", Text(f"load {visible(item)}"), "", "", "", "", "typed"
        if item.kind == GET:
            return self._row_to_get(item)
        mark = "●" if item.ref == self.current else ("★" if item.recent else "")
        name = Text(visible(item.name))
        if item.note:
            name.append(f"  ({visible(item.note)})", style="dim")
        size = format_bytes(item.size_bytes) if item.size_bytes else ""
        where = item.where.split(" (")[0]  # the folders themselves are named in the hint below
        return mark, name, self.memory(item), size, item.family_label, Text(item.defaults_label, style="dim"), \
            Text(visible(where), style="dim")

    def _row_to_get(self, item: CatalogEntry) -> tuple:
        name = Text(visible(item.name))
        if item.note:
            name.append(f"  {item.note}", style="yellow")
        return "↓", name, self.memory(item), format_bytes(item.size_bytes or 0), item.family_label, \
            Text(item.defaults_label, style="dim"), Text(f"Hub: {item.does}", style="dim")

    def _fit_order(self, item: CatalogEntry) -> tuple[int, int]:
        """Models to get that fit this machine first, then the tight ones, then those that would swap;
        the smallest first within each."""
        estimate = self._estimate(item)
        if estimate is None:
            return 3, 0
        verdict = judge(estimate.peak, self.budget).verdict if self.budget else FITS
        return (FITS, TIGHT).index(verdict) if verdict in (FITS, TIGHT) else 2, estimate.peak

    def _estimate(self, item: CatalogEntry):
        family = item.family.family if item.family else None
        return item.estimate(choose_dtype(self.dtype_setting, self.device, family, self.facts).value,
                             quantize=self.quantize)

    def memory(self, item: CatalogEntry) -> Text:
        """What the model needs at the dtype it will run in and its native size, against what this
        machine's device may use: "fits 23/32 GB", "swaps 40/21 GB"; a "+" where a job's working
        memory was never measured for its family, so only the weights are counted."""
        estimate = self._estimate(item)
        if estimate is None:
            return Text("")
        more = "" if estimate.measured else "+"
        if self.budget is None:
            return Text(f"~{gb(estimate.peak)}{more} GB")
        fit = judge(estimate.peak, self.budget)
        return Text(fit.label(more), style={FITS: "green", TIGHT: "yellow"}.get(fit.verdict, "bold red"))

    def result(self, item: CatalogEntry | str) -> str | None:
        if item is TO_GET:
            return None
        if isinstance(item, str):
            return item
        return item.ref  # a model to get too, a repository or one file of it: loading it downloads it

    def nothing_matches(self, text: str) -> None:
        self.hint(f"model: nothing here matches {visible(text)!r}; type a Hub id like owner/name (or owner/name/"
                  "FILE.gguf for one file of it) or the path of an existing folder or .safetensors file",
                  style="bold red")


def _searched(entry: CatalogEntry) -> str:
    """What typing filters an entry by: its name, family and place; a model to get also by its repository
    and what it does."""
    text = f"{entry.name} {entry.family_label} {entry.where.split(' (')[0]}"
    return f"{text} {entry.ref} {entry.does}" if entry.kind == GET else text
