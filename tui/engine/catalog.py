"""The models a user can pick from: diffusers pipelines in the local Hugging Face cache,
folders and single-file checkpoints in the models folder, recently used models, and the
demo model. Each entry says its family, its size on disk and where it is.

Only files are read (configs, safetensors and GGUF headers), never weights, and nothing goes
online: the picker lists what is already here.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from tui.engine.demo import DEMO_LABEL, DEMO_MODEL_ID
from tui.engine.download import hub_cache_dir, main_snapshot, repo_folder
from tui.engine.families import SD1, ModelFamily, family_from_checkpoint, family_from_configs
from tui.engine.gguf_header import GGUF_SUFFIX, INSTALL
from tui.engine.hub_files import cached_hub_file
from tui.engine.models import split_hub_file
from tui.engine.pickles import PICKLE_SUFFIXES
from tui.engine.estimate import Estimate, Part, estimate, folder_parts, quantized_on_load, split_header
from tui.engine.safetensors_header import HeaderError, read_header
from tui.engine.sdnq import missing_note
from tui.engine.single_files import TRANSFORMER

log = logging.getLogger("tui.engine.catalog")
RECENT_LIMIT = 12
UNFINISHED = "unfinished download: pick it to resume"  # its size column shows what has arrived
BASE_ONLY = "no transformer weights: the base of single files"
DEMO_FAMILY = ModelFamily(SD1, False, 512)


@dataclass(frozen=True)
class CatalogEntry:
    ref: str  # what the model setting is set to when picked
    name: str
    kind: str  # demo | hub | folder | file | get (a known model not here yet: getable.py)
    family: ModelFamily | None
    size_bytes: int | None
    where: str
    recent: bool = False
    note: str = ""  # why it may not load as it is
    parts: tuple[Part, ...] = ()  # its components' weights, from the files' headers (a model to get: its entry's)
    quantization: str = ""  # a GGUF file's ("Q8_0", "Q5_K_M"...), an SDNQ repository's ("SDNQ uint4")
    does: str = ""  # a model to get: "text to image", "edit", "text to image and edit"

    @property
    def family_label(self) -> str:
        """Its family, and its quantization where it is stored quantized: "FLUX.1 Q8_0", "Z-Image SDNQ uint4"."""
        label = self.family.label if self.family else "?"
        return f"{label} {self.quantization}" if self.quantization else label

    @property
    def defaults_label(self) -> str:
        """The settings the family starts a model at: "1024px 8 steps cfg 0"."""
        if not self.family:
            return ""
        d = self.family.defaults
        return f"{self.family.native_size}px {d.steps} steps cfg {d.guidance:g}"

    def estimate(self, dtype: str, size: tuple[int, int] | None = None, quantize: str = "none") -> Estimate | None:
        """What it will need running in ``dtype`` at ``size`` (its native size when not given), with the parts
        the ``quantize`` setting quantizes as they load held in NF4 where it applies to this model; None
        where no header could be read. A GGUF transformer stays quantized whatever the dtype."""
        if not self.parts:
            return None
        family = self.family.family if self.family else None
        native = self.family.native_size if self.family else 512
        parts = quantized_on_load(self.parts, quantize) if self.quantizes_on_load else self.parts
        return estimate(parts, dtype, family.job_memory_gb if family else None, native, size)

    @property
    def quantizes_on_load(self) -> bool:
        """Whether the quantize setting applies to it: pipelines (a folder, a Hub snapshot, a model to get) and
        files holding a transformer alone, with their base's parts; not a whole checkpoint. Parts quantized
        already (a GGUF transformer, a repository's SDNQ ones) stay as they are (quantized_on_load)."""
        return self.kind != "file" or any(part.name == TRANSFORMER for part in self.parts)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def folder_family(folder: Path, name: str = "") -> ModelFamily:
    return family_from_configs(_read_json(folder / "model_index.json"), _read_json(folder / "unet" / "config.json"),
                               _read_json(folder / "scheduler" / "scheduler_config.json"), name or folder.name,
                               transformer=_read_json(folder / "transformer" / "config.json"))


def checkpoint_family(path: Path) -> tuple[ModelFamily | None, str]:
    """The family of a single-file checkpoint and a note when it cannot be used as it is."""
    checked = _checkpoint(path)
    return checked.family, checked.note


class _Checked(NamedTuple):
    """What a single file's header says of it."""

    family: ModelFamily | None
    note: str
    parts: tuple[Part, ...] = ()
    quantization: str = ""
    listed: bool = True  # False: not a model to pick (a LoRA, a VAE, a GGUF text encoder)


def _checkpoint(path: Path) -> _Checked:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return _Checked(None, "pickle format: loads only with --allow-pickle")
    if path.suffix.lower() == GGUF_SUFFIX:
        return _gguf_checkpoint(path)
    try:
        header = read_header(path)
    except HeaderError as error:
        return _Checked(None, str(error))
    family = family_from_checkpoint(header.shapes.keys(), path.name)
    if family is None:
        return _Checked(None, "not a whole checkpoint (a LoRA, VAE or embedding?)", listed=False)
    return _Checked(family, "truncated: download it again" if header.truncated else "",
                    checkpoint_parts(family, header))


def _gguf_checkpoint(path: Path) -> _Checked:
    """A GGUF file's family (by its tensor names), its quantization and its weights' bytes as stored, from
    its header. A GGUF of another kind (a text encoder's) is not listed; one whose architecture is a known
    family's but whose tensors sdtui cannot load (Lumina 2's, which also says "lumina2") is listed with why."""
    from tui.engine.families import family_from_gguf
    from tui.engine.gguf_header import GGUFError, GGUFMissing, read_gguf_header
    from tui.engine.single_files import gguf_family

    try:
        header = read_gguf_header(path)
    except GGUFMissing:
        return _Checked(None, f"GGUF: needs the gguf package ({INSTALL})")
    except GGUFError:
        return _Checked(None, "not a readable GGUF file: download it again")
    family = gguf_family(header, path.name)
    if family is None:  # listed where its architecture is an image model's, with why it does not load
        note = f"GGUF of architecture {header.architecture!r}: not a transformer sdtui loads"
        return _Checked(None, note, listed=family_from_gguf(header.architecture) is not None)
    own = Part(TRANSFORMER, 0, header.stored_bytes, header.quantization)
    return _Checked(family, "", (own, *base_parts(family, header.shapes)), header.quantization)


def checkpoint_parts(family: ModelFamily, header) -> tuple[Part, ...]:
    """A single file's parts: a whole checkpoint's own (its UNet, VAE and text encoders under their
    prefixes); a transformer-only file's transformer with the other parts of the base repository it loads
    with, where the cache holds one."""
    from tui.engine.single_files import component_of, transformer_only

    if not transformer_only(family, header.shapes.keys()):
        return tuple(sorted(split_header(header, component_of).values(), key=lambda part: part.name))
    return (split_header(header, lambda _tensor: TRANSFORMER)[TRANSFORMER], *base_parts(family, header.shapes))


def base_parts(family: ModelFamily, shapes) -> tuple[Part, ...]:
    """The parts besides the transformer that a transformer-only file loads with: its base repository's,
    where the cache holds one (else unknown: only the file's own weights are counted)."""
    from tui.engine.single_files import base_repo_id, find_base

    found = find_base(family, base_repo_id(family, shapes), False, False)
    return tuple(part for part in folder_parts(found[1].folder) if part.name != TRANSFORMER) if found else ()


def _file_entry(path: Path, name: str, where: str, checked: _Checked | None = None) -> CatalogEntry:
    checked = checked or _checkpoint(path)
    return CatalogEntry(str(path), name, "file", checked.family, _size(path), where, note=checked.note,
                        parts=checked.parts, quantization=checked.quantization)


def _folder_size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size  # follows the cache's symlinks to blobs
            except OSError:
                pass
    return total


def scan_hub_cache(cache_dir: Path | None = None) -> list[CatalogEntry]:
    """Diffusers pipelines (a snapshot with model_index.json) and whole single-file
    checkpoints in the Hugging Face cache, one entry per repository."""
    cache_dir = cache_dir or hub_cache_dir()
    if not cache_dir.is_dir():
        return []
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_dir)
    except (CacheNotFound, OSError) as error:
        log.warning("cannot scan the Hugging Face cache %s: %s", cache_dir, error)
        return []
    entries = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id.casefold()):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        main = next((r for r in repo.revisions if "main" in r.refs), None)
        revision = main or max(repo.revisions, key=lambda r: r.last_modified)
        snapshot = Path(revision.snapshot_path)
        where = f"Hugging Face cache ({cache_dir})"
        if (snapshot / "model_index.json").is_file():
            note = BASE_ONLY if _without_transformer_weights(snapshot) else ""
            entries.append(_pipeline_entry(repo.repo_id, repo.repo_id, "hub", snapshot, repo.size_on_disk, where,
                                           note, family_name=repo.repo_id))
            continue
        for file in sorted([*snapshot.glob("*.safetensors"), *snapshot.glob("*.gguf")]):
            checked = _checkpoint(file)
            if checked.family is not None:
                name = f"{repo.repo_id}/{file.name}"
                # Picked by its Hub name where that finds it (the main revision's): the name the recent
                # list, the models to get and a typed setting use, loaded from the cache all the same.
                entry = _file_entry(file, name, where, checked)
                entries.append(replace(entry, ref=name) if main is not None else entry)
    return entries


def _pipeline_entry(ref: str, name: str, kind: str, folder: Path, size: int | None, where: str, note: str = "",
                    family_name: str = "") -> CatalogEntry:
    """A diffusers folder's entry (a Hub snapshot's too): its family, its parts from the headers, and the
    quantization its weights are stored in where a quantizer saved them (an SDNQ repository's)."""
    parts = folder_parts(folder)
    main = next((part.quantization for part in parts if part.name in (TRANSFORMER, "unet") and part.quantization), "")
    quantization = main or next((part.quantization for part in parts if part.quantization), "")
    note = note or missing_note(quantization)
    return CatalogEntry(ref, name, kind, folder_family(folder, family_name), size, where, note=note, parts=parts,
                        quantization=quantization)


def _without_transformer_weights(snapshot: Path) -> bool:
    """A repository fetched without its transformer's weights (hf download --exclude
    'transformer/*.safetensors'): the base that transformer-only single files load with."""
    transformer = snapshot / "transformer"
    return (transformer / "config.json").is_file() and not any(transformer.glob("*.safetensors"))


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def scan_models_dir(models_dir: Path) -> list[CatalogEntry]:
    """Diffusers folders and single-file checkpoints in ``models_dir`` and its subfolders
    (two levels, as people sort checkpoints into folders by family)."""
    if not models_dir.is_dir():
        return []
    entries = []
    for path in sorted(_walk(models_dir, depth=2), key=lambda p: str(p).casefold()):
        where = f"models folder ({models_dir})"
        name = str(path.relative_to(models_dir))
        if path.is_dir():
            entries.append(_pipeline_entry(str(path), name, "folder", path, _folder_size(path), where))
        else:
            checked = _checkpoint(path)
            if checked.listed:  # LoRAs, VAEs and embeddings live beside checkpoints; they are not models to pick
                entries.append(_file_entry(path, name, where, checked))
    return entries


def _walk(folder: Path, depth: int):
    try:
        children = list(folder.iterdir())
    except OSError:
        return
    for child in children:
        if child.name.startswith("."):
            continue
        if child.is_dir():
            if (child / "model_index.json").is_file():
                yield child
            elif depth > 1:
                yield from _walk(child, depth - 1)
        elif child.suffix.lower() in (".safetensors", ".ckpt", GGUF_SUFFIX):
            yield child


def describe(ref: str, cache_dir: Path | None = None) -> CatalogEntry:
    """An entry for one model setting (a recent model, say), however it was given."""
    if ref.strip().casefold() == DEMO_MODEL_ID:
        return CatalogEntry(DEMO_MODEL_ID, DEMO_LABEL, "demo", DEMO_FAMILY, 0, "built in memory")
    path = Path(ref).expanduser()
    if path.is_dir():
        note = "" if (path / "model_index.json").is_file() else "no model_index.json"
        return _pipeline_entry(ref, path.name, "folder", path, _folder_size(path), str(path.parent), note)
    if path.is_file():
        return replace(_file_entry(path, path.name, str(path.parent)), ref=ref)
    if split_hub_file(ref) is not None:
        return _hub_file_entry(ref, cache_dir)
    if "/" in ref and not ref.startswith(("/", ".", "~")):
        snapshot = main_snapshot(repo_folder(cache_dir or hub_cache_dir(), ref))
        if snapshot is not None and (snapshot / "model_index.json").is_file():
            return _pipeline_entry(ref, ref, "hub", snapshot, _folder_size(snapshot), "Hugging Face cache",
                                   family_name=ref)
        return CatalogEntry(ref, ref, "hub", None, None, "Hugging Face Hub", note="not downloaded yet")
    return CatalogEntry(ref, ref, "folder", None, None, "", note="missing")


def _hub_file_entry(ref: str, cache_dir: Path | None) -> CatalogEntry:
    """One file of a Hub repository (owner/name/file.gguf): described from the cache's copy, once there."""
    path = cached_hub_file(ref, cache_dir)
    if path is None:
        return CatalogEntry(ref, ref, "hub", None, None, "Hugging Face Hub", note="not downloaded yet")
    return replace(_file_entry(path, ref, "Hugging Face cache"), ref=ref)


def family_on_disk(ref: str, cache_dir: Path | None = None) -> ModelFamily | None:
    """The family of a model setting read from its files before anything loads (so its dtype can be
    chosen for it); None where they are not here yet (a Hub id not downloaded) or say no family."""
    if ref.strip().casefold() == DEMO_MODEL_ID:
        return DEMO_FAMILY
    path = Path(ref).expanduser()
    if path.is_dir():
        return folder_family(path)
    if path.is_file():
        return checkpoint_family(path)[0]
    if split_hub_file(ref) is not None:
        cached = cached_hub_file(ref, cache_dir)
        return checkpoint_family(cached)[0] if cached is not None else None
    snapshot = main_snapshot(repo_folder(cache_dir or hub_cache_dir(), ref)) if "/" in ref else None
    if snapshot is not None and (snapshot / "model_index.json").is_file():
        return folder_family(snapshot, ref)
    return None


def _with_unfinished_downloads(entries: list[CatalogEntry], cache_dir: Path) -> list[CatalogEntry]:
    """Downloads that stopped before the model was whole: marked, with what is here, so picking
    one resumes it. Only a pipeline's (its model_index.json comes first): a single file's, which
    has none, is resumed by picking that file again, and its repository is no model to pick."""
    from tui.engine.download import interrupted_downloads

    unfinished = {d.repo_id: d for d in interrupted_downloads(cache_dir)
                  if not d.named and any((repo_folder(cache_dir, d.repo_id) / "snapshots").glob("*/model_index.json"))}
    out = []
    for entry in entries:
        download = unfinished.pop(entry.ref, None) if entry.kind == "hub" else None
        if download:
            entry = replace(entry, size_bytes=download.bytes_here, note=UNFINISHED)
        out.append(entry)
    for download in unfinished.values():
        out.append(CatalogEntry(download.repo_id, download.repo_id, "hub", None, download.bytes_here,
                                f"Hugging Face cache ({cache_dir})", note=UNFINISHED))
    return out


def build_catalog(models_dir: Path, recent: list[str], cache_dir: Path | None = None) -> list[CatalogEntry]:
    """Recently used models first (most recent first), then the Hugging Face cache, then the
    models folder, then the demo model; each model once."""
    cache_dir = cache_dir or hub_cache_dir()
    hub = _with_unfinished_downloads(scan_hub_cache(cache_dir), cache_dir) if cache_dir.is_dir() else []
    scanned = hub + scan_models_dir(models_dir)
    by_ref = {entry.ref: entry for entry in scanned}
    entries, seen = [], set()
    for ref in recent:
        if ref in seen:
            continue
        seen.add(ref)
        entry = by_ref.get(ref) or describe(ref, cache_dir)
        entries.append(replace(entry, recent=True))
    entries += [e for e in scanned if e.ref not in seen]
    seen.update(e.ref for e in scanned)
    if DEMO_MODEL_ID not in seen:
        entries.append(describe(DEMO_MODEL_ID))
    return entries


# --- recently used models ---------------------------------------------------------------


def load_recent(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [r for r in data if isinstance(r, str) and r.strip()][:RECENT_LIMIT] if isinstance(data, list) else []


def remember_recent(path: Path, ref: str) -> list[str]:
    """Put ``ref`` first in the recent list at ``path`` (written atomically); returns the list."""
    refs = [ref] + [r for r in load_recent(path) if r != ref]
    refs = refs[:RECENT_LIMIT]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(path.name + ".tmp")
        temp.write_text(json.dumps(refs, indent=1), encoding="utf-8")
        temp.replace(path)
    except OSError as error:
        log.warning("cannot remember recent models in %s: %s", path, error)
    return refs
