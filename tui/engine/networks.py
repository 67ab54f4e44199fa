"""LoRAs and textual-inversion embeddings on disk: A1111's ``<lora:name:weight>`` prompt syntax,
the files in the models folder's ``loras/`` and ``embeddings/``, the model family each fits, and
the short hashes A1111 writes into its images.

Plain file reads, no torch: the app's picker lists them and a request's syntax is checked with
these before any job runs.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

from tui.engine.families import CLIP, FAMILIES, SDXL, Family, Lora, family
from tui.engine.families.entry import LoraLayers, layer_pattern
from tui.engine.pickles import PICKLE_SUFFIXES
from tui.engine.safetensors_header import HeaderError, SafetensorsHeader, read_header

LORAS, EMBEDDINGS = "loras", "embeddings"
SAFE_SUFFIXES = (".safetensors",)
DEFAULT_WEIGHT = 1.0
# A1111's extra-network tags: <lora:name>, <lora:name:0.8>; <lyco:...> is LoRA's old alias there.
_TAG = re.compile(r"<(lora|lyco|hypernet):([^>]*)>", re.IGNORECASE)
# The cross-attention width each family's UNet reads (its text encoders' output), and the width of
# the one text encoder of the families that have one, by family label.
_CONTEXT_WIDTHS = {f.lora.context_width: f.label for f in FAMILIES if f.lora and f.lora.context_width}
_TEXT_WIDTHS = {clip[0].width: f.label for f in FAMILIES
                if len(clip := [e for e in f.encoders if e.kind == CLIP]) == 1}
# SDXL's LoRAs and embeddings are told apart by their second text encoder's parts.
_TWO_ENCODERS = family(SDXL).label
# The transformer families' kinds of LoRA by their label (FLUX.1 and Kontext take the same), with their
# layer patterns compiled.
_BY_LAYERS = {f.lora.label: (f.lora, tuple(layer_pattern(name) for name in f.lora.layers))
              for f in FAMILIES if f.lora and (f.lora.layers or f.lora.fits)}
# The prefixes a LoRA's layer names carry: diffusers' and PEFT's, ComfyUI's and ai-toolkit's, kohya's
# (lora_conversion_utils.py reads each).
_LAYER_PREFIXES = ("transformer.", "base_model.model.", "model.diffusion_model.", "diffusion_model.", "lora_unet_",
                   "lora_transformer_")
# What follows a layer's name: LoRA's halves (lora_A/lora_B, kohya's lora_down/lora_up, old diffusers'
# lora.down), kohya's alpha, DoRA's and LoKr's parts.
_LAYER_SUFFIX = re.compile(r"\.(?:lora[._]|alpha$|dora_scale|lokr_)")
_DOWN_AND_UP = (("lora_A", "lora_down", "lora.down"), ("lora_B", "lora_up", "lora.up"))


class NetworkError(ValueError):
    """A LoRA or embedding that cannot be used; the message is one sentence naming it."""


@dataclass(frozen=True)
class LoraUse:
    """A LoRA at ``weight``; A1111's two-weight form sets the UNet's apart (``unet``), and
    ``weight`` is then the text encoders' alone."""

    name: str
    weight: float
    unet: float | None = None

    @property
    def unet_weight(self) -> float:
        return self.weight if self.unet is None else self.unet

    @property
    def described(self) -> str:
        return f"{self.name} {self.weight:g}" if self.unet is None else \
            f"{self.name} (text encoder {self.weight:g}, UNet {self.unet:g})"


@dataclass(frozen=True)
class PromptNetworks:
    """A prompt with its LoRA tags taken out, and the LoRAs they asked for."""

    text: str
    loras: tuple[LoraUse, ...] = ()
    ignored: tuple[str, ...] = ()  # what was read but does nothing here, a sentence each


def _weight(tag: str, value: str) -> float:
    try:
        weight = float(value)
    except ValueError:
        raise NetworkError(f"prompt: {tag} has the weight {value!r}; use a number such as 0.8") from None
    if weight != weight or abs(weight) > 100:
        raise NetworkError(f"prompt: {tag} has the weight {value!r}; use a number from -100 to 100")
    return weight


def extract_loras(prompt: str) -> PromptNetworks:
    """``prompt`` without its ``<lora:...>`` tags, and the LoRAs they name with their weights
    (a name given twice keeps its last weight). Raises NetworkError for a tag that cannot be read."""
    loras: dict[str, float] = {}
    ignored: list[str] = []
    for match in _TAG.finditer(prompt):
        kind, args = match[1].casefold(), match[2].split(":")
        name = args[0].strip()
        if not name:
            raise NetworkError(f"prompt: {match[0]} names no file; write <lora:name:0.8>")
        if kind == "hypernet":
            ignored.append(f"{match[0]}: hypernetworks are not supported; the tag is ignored")
            continue
        loras.pop(name, None)
        loras[name] = _lora_use(match[0], name, args[1:], ignored)
    text = _TAG.sub("", prompt)
    return PromptNetworks(text, tuple(loras.values()), tuple(ignored))


_LORA_ARGS = ("te", "unet", "dyn")


def _lora_use(tag: str, name: str, args: list[str], ignored: list[str]) -> LoraUse:
    """A1111's arguments after the name: the text encoders' weight, the UNet's (the same when
    not given) and DyLoRA's rank, in that order or named ``te=``, ``unet=``, ``dyn=``; the
    source is A1111's extensions-builtin/Lora/extra_networks_lora.py."""
    given: dict[str, str] = {}
    positional = 0
    for arg in (a.strip() for a in args):
        key, named, value = arg.partition("=")
        if named:
            key = key.strip().casefold()
            if key not in _LORA_ARGS:
                raise NetworkError(f"prompt: {tag} names {key!r}; a LoRA takes te=, unet= and dyn=")
            given[key] = value.strip()
        elif positional < len(_LORA_ARGS):
            given.setdefault(_LORA_ARGS[positional], arg)
            positional += 1
    if given.get("dyn"):
        ignored.append(f"{tag}: dyn (a DyLoRA's rank) is not supported; the LoRA is used whole")
    te = _weight(tag, given["te"]) if given.get("te") else DEFAULT_WEIGHT
    unet = _weight(tag, given["unet"]) if given.get("unet") else None
    return LoraUse(name, te, None if unet == te else unet)


def lora_tag(name: str, weight: float = 0.8) -> str:
    return f"<lora:{name}:{weight:g}>"


# --- files -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkFile:
    kind: str  # LORAS | EMBEDDINGS
    name: str  # what a prompt calls it: the file name without its suffix
    path: Path
    family: str  # a family's label ("SD 1.x"), "" when its shapes say nothing, or a width for unknown models
    width: int | None  # the cross-attention (LoRA) or text-encoder (embedding) width it was made for
    problem: str = ""  # why it cannot be used, when it cannot
    steps: int | None = None  # the step count it is made for, where its name or metadata says (Lightning, Turbo)

    @property
    def label(self) -> str:
        return self.family or "unknown family"


def network_files(folder: Path, kind: str, allow_pickle: bool = False) -> list[NetworkFile]:
    """The LoRAs or embeddings in ``folder`` (the ``loras/`` or ``embeddings/`` of the models
    folder) and one level of subfolders, sorted by name."""
    if not folder.is_dir():
        return []
    found = []
    candidates = [*folder.iterdir(), *(p for sub in folder.iterdir() if sub.is_dir() for p in sub.iterdir())]
    for path in candidates:
        suffix = path.suffix.casefold()
        if not path.is_file() or suffix not in SAFE_SUFFIXES + PICKLE_SUFFIXES:
            continue
        found.append(describe_file(path, kind, allow_pickle))
    return sorted(found, key=lambda f: f.name.casefold())


def describe_file(path: Path, kind: str, allow_pickle: bool = False) -> NetworkFile:
    name = path.stem
    if path.suffix.casefold() in PICKLE_SUFFIXES:
        problem = "" if allow_pickle else f"{path.name} is a pickle file, which can run code; use a " \
                                          ".safetensors file or start sdtui with --allow-pickle"
        return NetworkFile(kind, name, path, "", None, problem)
    try:
        header = read_header(path)
    except HeaderError as error:
        return NetworkFile(kind, name, path, "", None, f"{path.name}: {error}")
    if header.truncated:
        return NetworkFile(kind, name, path, "", None, f"{path.name} is truncated: download it again")
    family, width = (lora_family(header) if kind == LORAS else embedding_family(header))
    return NetworkFile(kind, name, path, family, width, steps=made_for_steps(name, header.metadata))


# "8steps", "4-step", "Lightning_8_steps": distilled LoRAs name the step count they were made for.
_STEPS = re.compile(r"(?<![\d.])(\d{1,2})[-_ ]?steps?(?![a-z])", re.IGNORECASE)
# Metadata keys whose text describes the LoRA (the safetensors "modelspec" convention, kohya's output name).
_DESCRIBING_KEYS = ("modelspec.title", "modelspec.description", "ss_output_name")


def made_for_steps(name: str, metadata: dict[str, str]) -> int | None:
    """The step count a LoRA says it is made for, in its file name or its describing metadata."""
    for text in (name, *(str(metadata.get(key, "")) for key in _DESCRIBING_KEYS)):
        found = _STEPS.search(text)
        if found and 0 < int(found.group(1)) <= 50:
            return int(found.group(1))
    return None


def _family_label(width: int | None, table: dict[int, str]) -> str:
    if width is None:
        return ""
    return table.get(width, f"width {width}")


def lora_label(entry: Family) -> str:
    """What the LoRAs of ``entry`` go by: its LoRA label where families share them, else its own."""
    return entry.lora.label if entry.lora and entry.lora.label else entry.label


def lora_layers(shapes: dict[str, tuple[int, ...]]) -> LoraLayers:
    """A LoRA file's layers, named without prefix and suffix, with their input and output widths."""
    layers: dict[str, list[int | None]] = {}
    for key, shape in shapes.items():
        found = _LAYER_SUFFIX.search(key)
        if found is None:
            continue
        name, rest = key[:found.start()], key[found.start() + 1:]
        name = next((name[len(p):] for p in _LAYER_PREFIXES if name.startswith(p)), name)
        widths = layers.setdefault(name, [None, None])
        if len(shape) == 2 and rest.startswith(_DOWN_AND_UP[0]):
            widths[0] = shape[1]
        elif len(shape) == 2 and rest.startswith(_DOWN_AND_UP[1]):
            widths[1] = shape[0]
    return {name: (widths[0], widths[1]) for name, widths in layers.items()}


def transformer_lora_family(layers: LoraLayers) -> str:
    """The label of the one kind of transformer LoRA whose layer names (or test) the file's layers
    match; "" when none does, or more than one."""
    claims = [label for label, (lora, patterns) in _BY_LAYERS.items() if _claims(lora, patterns, layers)]
    return claims[0] if len(claims) == 1 else ""


def _claims(lora: Lora, patterns: tuple[re.Pattern[str], ...], layers: LoraLayers) -> bool:
    if any(pattern.match(name) for name in layers for pattern in patterns):
        return True
    return lora.fits is not None and lora.fits(layers)


def lora_family(header: SafetensorsHeader) -> tuple[str, int | None]:
    """A LoRA's family: a transformer family's by its layers' names (and widths, where names are
    shared); a UNet family's from the input width of its cross-attention key projection (kohya's
    ``attn2_to_k.lora_down`` or diffusers' ``attn2.to_k.lora_A``), else from its text-encoder
    layers (a second text encoder means SDXL)."""
    shapes = header.shapes
    transformer = transformer_lora_family(lora_layers(shapes))
    if transformer:
        return transformer, None
    for key, shape in shapes.items():
        if "attn2" in key and "to_k" in key and _is_down(key) and len(shape) == 2:
            return _family_label(shape[1], _CONTEXT_WIDTHS), shape[1]
    if any("te2" in key or "text_encoder_2" in key for key in shapes):
        return _TWO_ENCODERS, None
    for key, shape in shapes.items():
        if ("lora_te" in key or "text_encoder" in key) and "q_proj" in key and _is_down(key) and len(shape) == 2:
            return _family_label(shape[1], _TEXT_WIDTHS), None
    return "", None


def _is_down(key: str) -> bool:
    return "lora_down" in key or "lora_A" in key or "lora.down" in key


def embedding_family(header: SafetensorsHeader) -> tuple[str, int | None]:
    """An embedding's family: SDXL's have a vector set per text encoder (``clip_l``, ``clip_g``);
    A1111's (``emb_params``) and diffusers' (one tensor) have the width of the one text encoder."""
    shapes = header.shapes
    if "clip_l" in shapes and "clip_g" in shapes:
        return _TWO_ENCODERS, shapes["clip_l"][-1]
    if len(shapes) == 1:
        width = next(iter(shapes.values()))[-1]
        return _family_label(width, _TEXT_WIDTHS), width
    return "", None


def find_network(files: list[NetworkFile], name: str, kind: str) -> NetworkFile:
    """The file a prompt's ``name`` means: exact, else the only case-insensitive match."""
    exact = [f for f in files if f.name == name]
    loose = exact or [f for f in files if f.name.casefold() == name.casefold()]
    if len(loose) == 1:
        return loose[0]
    noun = "LoRA" if kind == LORAS else "embedding"
    if loose:
        raise NetworkError(f"{noun}: {name!r} matches {len(loose)} files ({', '.join(str(f.path) for f in loose)}); "
                           "rename one")
    known = ", ".join(f.name for f in files[:8]) + (", ..." if len(files) > 8 else "")
    raise NetworkError(f"{noun}: no {name!r} in the {kind} folder" + (f" (there: {known})" if files else
                                                                     " (it is empty)"))


def lora_names_by_hash(prompt: str, hashes: dict[str, str], folder: Path,
                       allow_pickle: bool = False) -> tuple[str, list[str]]:
    """``prompt`` with each LoRA tag whose name is not in ``folder`` (``loras/``) but whose hash
    (``hashes``: an image's ``Lora hashes``, name -> short hash) is, renamed to the file here, and
    a sentence for each. As A1111 does on pasting parameters, so a LoRA saved under another name
    still makes the image. Only a missing name's hash is looked for; each file is hashed once."""
    files = [f for f in network_files(folder, LORAS, allow_pickle) if not f.problem]
    renames: dict[str, str] = {}
    for match in _TAG.finditer(prompt):
        name = match[2].split(":")[0].strip()
        wanted = hashes.get(name, "").casefold()
        if match[1].casefold() == "hypernet" or not wanted or name in renames or _is_named(files, name):
            continue
        same = next((f for f in files if short_hash(f.path, skip_header=True) == wanted), None)
        if same is not None:
            renames[name] = same.name

    def renamed(match: re.Match) -> str:
        name, rest = (match[2].split(":", 1) + [""])[:2]
        new = renames.get(name.strip())
        return match[0] if new is None else f"<{match[1]}:{new}{':' + rest if ':' in match[2] else ''}>"

    notes = [f"LoRA {old!r} is here as {new!r} (the same hash, {hashes[old]}): the prompt now names it so"
             for old, new in renames.items()]
    return (_TAG.sub(renamed, prompt) if renames else prompt), notes


def _is_named(files: list[NetworkFile], name: str) -> bool:
    try:
        find_network(files, name, LORAS)
    except NetworkError:
        return False
    return True


# --- hashes --------------------------------------------------------------------------------------

_hash_lock = threading.Lock()
_hashes: dict[tuple[str, int, int, bool], str] = {}


def short_hash(path: Path, skip_header: bool) -> str:
    """The first 12 hex digits of a SHA-256, as A1111 writes them: of the tensor data after the
    header for a LoRA .safetensors (the "addnet" hash, unchanged by edits to its metadata), of
    the whole file otherwise. Remembered per file size and modification time."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, skip_header)
    with _hash_lock:
        if key in _hashes:
            return _hashes[key]
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if skip_header and path.suffix.casefold() == ".safetensors":
            length = int.from_bytes(handle.read(8), "little")
            handle.seek(8 + length)
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()[:12]
    with _hash_lock:
        _hashes[key] = value
    return value


def format_hashes(hashes: dict[str, str]) -> str:
    """A1111's ``Lora hashes`` / ``TI hashes`` value: ``name: hash, name: hash``."""
    return ", ".join(f"{name}: {value}" for name, value in hashes.items())


def parse_hashes(text: str) -> dict[str, str]:
    pairs = {}
    for part in text.split(","):
        name, _, value = part.rpartition(":")
        if name.strip() and value.strip():
            pairs[name.strip()] = value.strip()
    return pairs
