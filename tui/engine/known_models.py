"""The models worth getting (known_models.toml beside this module): each one's Hub repository (and file, for
a GGUF quantization), its family and variant in the registry, what it does, its licence, whether the Hub
gates it, and its components' parameter counts, from which its download size and memory follow. A
known_models.toml in sdtui's config folder adds entries or replaces built-in ones with the same id; an
entry that is wrong there is said in one sentence, once, and the others still load.

Pure data and checks: no torch, nothing read but the two files.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from tui.engine.families import FAMILIES, ModelFamily, family
from tui.engine.models import split_hub_file

log = logging.getLogger("tui.engine.known_models")
BUILT_IN = Path(__file__).with_name("known_models.toml")

# Bits per weight of ggml's quantization types: a block's bytes over its weights (ggml-common.h). Q8_0 and
# the legacy types hold 32 weights a block with one fp16 scale: Q8_0 34 bytes (8.5), Q5_0 22 (5.5), Q4_0 18
# (4.5). The K-quants hold 256 a super-block: Q6_K 210 bytes (6.5625), Q5_K 176 (5.5), Q4_K 144 (4.5),
# Q3_K 110 (3.4375), Q2_K 84 (2.625).
BITS_PER_WEIGHT = {"Q8_0": 8.5, "Q6_K": 6.5625, "Q5_K": 5.5, "Q5_0": 5.5, "Q4_K": 4.5, "Q4_0": 4.5,
                   "Q3_K": 3.4375, "Q2_K": 2.625}
# Bits per weight an SDNQ repository stores for its transformer (or UNet) and for its text encoders, with scales,
# zero points, SVD factors and the layers sdnq leaves unquantized (norms, embeddings, small layers): measured
# by tests/bench/sdnq_check.py on the published Z-Image-Turbo and FLUX.2 klein 4B architectures (H200,
# 2026-12-04): uint4 with SVD rank 32 stored 4.78 and 5.28 for the transformers, 5.88 for Qwen3-4B; int8
# 8.04 and 8.79. The larger transformer figure is taken. A "dynamic" repository mixes uint4 and int5 layers
# by trial; it is counted as if every layer took int5, a bit more than uint4, so its need is not understated.
SDNQ_BITS_PER_WEIGHT = {"SDNQ uint4": (5.3, 5.9), "SDNQ int8": (8.1, 8.8), "SDNQ uint4 dynamic": (6.3, 6.9)}
HALF_PRECISION_BYTES = 2  # bf16 and fp16, what the repositories publish
COMPONENTS = ("transformer", "unet", "text_encoder", "text_encoder_2", "text_encoder_3", "vae")
TEXT_TO_IMAGE, EDIT, BOTH = "text to image", "edit", "text to image and edit"
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class KnownModel:
    repo: str
    label: str
    family: str  # a registry id
    variant: str  # a variant id of the family, or ""
    does: str
    licence: str
    gated: bool
    parameters: Mapping[str, int]  # component -> weights
    file: str = ""  # a single file of the repository: its transformer, quantized
    base: str = ""  # a single file's: the repository its other parts come from
    quantization: str = ""  # a GGUF file's ("Q8_0", "Q4_K_S"), an SDNQ repository's ("SDNQ uint4")
    pipeline: str = ""  # a repository's model_index.json _class_name

    @property
    def id(self) -> str:
        return f"{self.repo}/{self.file}" if self.file else self.repo

    @property
    def model_family(self) -> ModelFamily:
        entry = family(self.family)
        variant = entry.variant(self.variant) if self.variant else None
        size = variant.defaults.size if variant else entry.defaults.size
        return ModelFamily(entry.id, variant is not None, size)

    def quantizes(self, component: str) -> bool:
        """Whether ``component`` is stored quantized: a GGUF file's transformer, an SDNQ repository's transformer
        (or UNet) and text encoders; never a VAE."""
        return bool(self.quantization) and component != "vae"

    def bytes_per_weight(self, component: str) -> float:
        if not self.quantizes(component):
            return HALF_PRECISION_BYTES
        if self.quantization in SDNQ_BITS_PER_WEIGHT:
            main, encoders = SDNQ_BITS_PER_WEIGHT[self.quantization]
            return (encoders if component.startswith("text_encoder") else main) / 8
        return BITS_PER_WEIGHT[block_type(self.quantization)] / 8

    @property
    def download_bytes(self) -> int:
        return int(sum(count * self.bytes_per_weight(name) for name, count in self.parameters.items()))


def block_type(quantization: str) -> str:
    """The ggml type a file's quantization label names: "Q4_K_S" and "Q4_K_M" are mixes of Q4_K blocks."""
    return re.sub(r"_[SML]$", "", quantization.upper())


def pipelines_do(family_id: str) -> str:
    """What a family's pipelines do, in the words entries use."""
    pipelines = family(family_id).pipelines
    if pipelines.edit_only:
        return EDIT
    return BOTH if pipelines.edit else TEXT_TO_IMAGE


class BadEntry(ValueError):
    """An entry that cannot be used; the message says which field and what is allowed."""


def _text(raw: Mapping[str, Any], key: str, required: bool = True) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise BadEntry(f"{key} must be {'a non-empty' if required else 'a'} string")
    return value.strip()


def _repo(raw: Mapping[str, Any], key: str) -> str:
    repo = _text(raw, key)
    if not _REPO.match(repo):
        raise BadEntry(f"{key} {repo!r} is not a Hub repository id; write it as owner/name")
    return repo


def _file(raw: Mapping[str, Any]) -> str:
    file = _text(raw, "file", required=False)
    if file and split_hub_file(f"owner/name/{file}") is None:
        raise BadEntry(f"file {file!r} is not allowed; name a .safetensors or .gguf file by its path in the "
                       "repository (folder/name.gguf)")
    return file


def _family(raw: Mapping[str, Any]) -> tuple[str, str]:
    family_id = _text(raw, "family")
    ids = [f.id for f in FAMILIES]
    if family_id not in ids:
        raise BadEntry(f"family {family_id!r} is not a family sdtui knows; use one of {', '.join(ids)}")
    variant = _text(raw, "variant", required=False)
    variants = [v.id for v in family(family_id).variants]
    if variant and variant not in variants:
        allowed = f"leave it out or use {', '.join(variants)}" if variants else "leave it out: the family has none"
        raise BadEntry(f"variant {variant!r} is not one of {family_id}'s; {allowed}")
    return family_id, variant


def _parameters(raw: Mapping[str, Any]) -> dict[str, int]:
    parameters = raw.get("parameters")
    allowed = f"a table of {', '.join(COMPONENTS)} to positive whole numbers of weights"
    if not isinstance(parameters, dict) or not parameters:
        raise BadEntry(f"parameters must be {allowed}")
    for name, count in parameters.items():
        if name not in COMPONENTS or isinstance(count, bool) or not isinstance(count, int) or count <= 0:
            raise BadEntry(f"parameters {name} = {count!r} is not allowed; parameters must be {allowed}")
    return dict(parameters)


def parse_entry(raw: Any) -> KnownModel:
    """One [[model]] table as an entry; BadEntry says what is wrong with it."""
    if not isinstance(raw, dict):
        raise BadEntry("the entry must be a [[model]] table")
    repo = _repo(raw, "repo")
    family_id, variant = _family(raw)
    file = _file(raw)
    base = _repo(raw, "base") if file else ""
    quantization = _text(raw, "quantization", required=False)
    if quantization and file and block_type(quantization) not in BITS_PER_WEIGHT:
        raise BadEntry(f"quantization {quantization!r} is not one sdtui can size for a GGUF file; use one of "
                       f"{', '.join(BITS_PER_WEIGHT)} (with _S or _M where the file's name has it)")
    if quantization and not file and quantization not in SDNQ_BITS_PER_WEIGHT:
        raise BadEntry(f"quantization {quantization!r} is not one sdtui can size for a repository; use one of "
                       f"{', '.join(SDNQ_BITS_PER_WEIGHT)} (an SDNQ repository's), or leave it out")
    does = _text(raw, "does", required=False) or pipelines_do(family_id)
    if does not in (TEXT_TO_IMAGE, EDIT, BOTH):
        raise BadEntry(f"does {does!r} is not allowed; use {TEXT_TO_IMAGE!r}, {EDIT!r} or {BOTH!r}")
    gated = raw.get("gated", False)
    if not isinstance(gated, bool):
        raise BadEntry("gated must be true or false")
    return KnownModel(repo, _text(raw, "label"), family_id, variant, does, _text(raw, "licence", required=False),
                      gated, _parameters(raw), file, base, quantization, _text(raw, "pipeline", required=False))


_said: set[str] = set()  # problems already logged: the picker reads the files each time it opens


def _say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        log.warning(message)


def read_entries(path: Path) -> list[KnownModel]:
    """The entries of one known_models.toml; an unreadable file or entry is logged once and left out."""
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        _say_once(f"{path}: cannot be read ({error}); its models are left out")
        return []
    tables = data.get("model", [])
    if not isinstance(tables, list):
        _say_once(f"{path}: model must be [[model]] tables; its models are left out")
        return []
    entries = []
    for number, raw in enumerate(tables, 1):
        try:
            entries.append(parse_entry(raw))
        except BadEntry as error:
            name = raw.get("label") or raw.get("repo") if isinstance(raw, dict) else None
            which = f"model entry {number}" + (f" ({name})" if isinstance(name, str) and name else "")
            _say_once(f"{path}: {which}: {error}; that entry is left out")
    return entries


def known_models(user_file: Path | None = None) -> list[KnownModel]:
    """The built-in entries, with the user's file's added after them or in place of those with the same id;
    a single-file entry whose base is not an entry of the list is left out (its other parts are unknown)."""
    entries = {entry.id: entry for entry in read_entries(BUILT_IN)}
    if user_file is not None:
        entries.update({entry.id: entry for entry in read_entries(user_file)})
    usable = []
    for entry in entries.values():
        base = entries.get(entry.base) if entry.file else None
        if entry.file and (base is None or base.file):
            _say_once(f"{user_file or BUILT_IN}: model entry ({entry.label}): base {entry.base!r} is not a repository "
                      "entry of the list; name a repository listed there, or add its entry; that entry is left out")
            continue
        usable.append(entry)
    return usable
