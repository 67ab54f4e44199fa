"""The picker's rows of models to get: the known models not already in the Hugging Face cache, each with
its download size and the parts its memory estimate is counted from, so it is judged for this machine
before a byte is fetched."""

from __future__ import annotations

from pathlib import Path

from tui.engine.catalog import CatalogEntry
from tui.engine.download import hub_cache_dir
from tui.engine.estimate import Part
from tui.engine.hub_files import cached_hub_file
from tui.engine.known_models import KnownModel, known_models
from tui.engine.sdnq import missing_note

GET = "get"  # CatalogEntry.kind of a model to get
ON_THE_HUB = "Hugging Face Hub"


def parts(entry: KnownModel, base: KnownModel | None = None) -> tuple[Part, ...]:
    """What the model will hold: a repository's components at the run dtype, but those it stores quantized (an
    SDNQ repository's), as stored; a quantized file's transformer as stored, with its base repository's other
    parts."""
    own = tuple(Part(name, fixed_bytes=int(count * entry.bytes_per_weight(name)), quantization=entry.quantization)
                if entry.quantizes(name) else Part(name, floating=count) for name, count in entry.parameters.items())
    others = tuple(part for part in parts(base) if part.name not in entry.parameters) if base else ()
    return tuple(sorted(own + others, key=lambda part: part.name))


def is_gated(entry: KnownModel, base: KnownModel | None) -> bool:
    """Whether fetching it needs a licence accepted on the Hub: its own, or that of the base it loads with."""
    return entry.gated or bool(base and base.gated)


def in_cache(entry: KnownModel, cache_dir: Path) -> bool:
    """Whether its file is already in the cache (a repository counts as here when the cache scan lists it)."""
    return cached_hub_file(entry.id, cache_dir) is not None


def catalog_entry(entry: KnownModel, base: KnownModel | None = None) -> CatalogEntry:
    note = "gated" if is_gated(entry, base) else missing_note(entry.quantization)
    return CatalogEntry(entry.id, entry.label, GET, entry.model_family, entry.download_bytes, ON_THE_HUB,
                        note=note, parts=parts(entry, base), does=entry.does)


def getable(on_disk: list[CatalogEntry], user_file: Path | None = None,
            cache_dir: Path | None = None) -> list[CatalogEntry]:
    """The known models that ``on_disk`` (the catalog of what is here) does not list, in the file's order."""
    cache_dir = cache_dir or hub_cache_dir()
    here = {entry.ref for entry in on_disk}
    known = known_models(user_file)
    by_id = {entry.id: entry for entry in known}
    rows = []
    for entry in known:
        if entry.id in here or (entry.file and in_cache(entry, cache_dir)):
            continue
        rows.append(catalog_entry(entry, by_id.get(entry.base)))
    return rows


def smaller_of_the_family(family_id: str, dtype: str, size: tuple[int, int]) -> list[tuple[str, int]]:
    """The known models of a family (quantized files, smaller variants) with their need at ``dtype`` and
    ``size``, the largest first: what the log suggests, in that order, for a model that would swap."""
    known = known_models()
    by_id = {entry.id: entry for entry in known}
    found = []
    for entry in known:
        if entry.family != family_id:
            continue
        estimate = catalog_entry(entry, by_id.get(entry.base)).estimate(dtype, size)
        if estimate is not None:
            found.append((f"{entry.label} ({entry.id})", estimate.peak))
    return sorted(found, key=lambda item: -item[1])
