"""Where a model comes from and how it is loaded: the demo model, a local diffusers
folder or single file, a Hugging Face Hub id, or one file of a Hub repository (from the
local cache, downloading when allowed).

Safetensors only by default: weights that would be unpickled (.ckpt .bin .pt .pth)
can run arbitrary code, so they are refused unless the user allows pickle.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterator

from tui.engine.demo import DEMO_LABEL, DEMO_MODEL_ID
from tui.engine.families import FAMILIES
from tui.engine.pickles import PICKLE_SUFFIXES

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SAFE_SUFFIXES = (".safetensors",)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# owner/name/path/to/file.gguf: one file of a repository, its path inside it after the repository id
_HUB_FILE = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)/(?P<file>[\w.-]+(?:/[\w.-]+)*)$")
HUB_FILE_SUFFIXES = (".safetensors", ".gguf")
HUB_PROBE_TIMEOUT_S = 3.0
log = logging.getLogger("tui.engine.models")


class ModelLoadError(Exception):
    """A model could not be found or loaded; the message says what to do."""


class NotOnHub(ModelLoadError):
    """The Hub has no such repository (or file): nothing answers to the model's name."""


def first_line(error: BaseException, default: str | None = None) -> str:
    """An exception's message cut to one line, for messages that must stay one line; when
    it has none, ``default`` (the exception's type name unless given)."""
    text = str(error).strip()
    if text:
        return text.splitlines()[0]
    return type(error).__name__ if default is None else default


# What diffusers raises for unreadable weights or configs; anything else is a bug to report.
LOADER_ERRORS = (OSError, ValueError, TypeError, KeyError, RuntimeError)


def _without_safety_checker(components) -> dict:
    """Loader arguments that skip the safety checker, which sdtui never runs (as A1111 and
    ComfyUI do not); empty for pipelines that have none."""
    return {"safety_checker": None, "requires_safety_checker": False} if "safety_checker" in components else {}


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "demo" | "folder" | "hub" | "file" | "hub_file"
    ref: str
    label: str


def split_hub_file(ref: str) -> tuple[str, str] | None:
    """("owner/name", "path/to/file.gguf") for one loadable file of a Hub repository; None for anything
    else (a repository id, a path, another kind of file)."""
    match = _HUB_FILE.match(ref.strip())
    if match is None or not match["file"].lower().endswith(HUB_FILE_SUFFIXES):
        return None
    if any(part in (".", "..") for part in match["file"].split("/")):
        return None
    return match["repo"], match["file"]


def resolve_source(model: str) -> ModelSource:
    text = model.strip()
    if not text:
        raise ModelLoadError("model: empty; give a Hub id, a local folder (--model PATH) or --demo")
    if text.casefold() == DEMO_MODEL_ID:
        return ModelSource("demo", DEMO_MODEL_ID, DEMO_LABEL)
    path = Path(text).expanduser()
    if path.is_dir():
        return ModelSource("folder", str(path.resolve()), path.name)
    if path.is_file():
        # Its own name kept: a file in the Hugging Face cache is a link to a blob named by its hash alone.
        return ModelSource("file", str(path.parent.resolve() / path.name), path.name)
    if _HUB_ID.match(text) and not text.startswith((".", "~")):
        return ModelSource("hub", text, text)
    if split_hub_file(text) is not None:
        return ModelSource("hub_file", text, text)
    raise ModelLoadError(f"model: {text!r} is neither an existing folder nor a Hub id like owner/name (or "
                         "owner/name/FILE.safetensors or .gguf for one file of it); give --model PATH to a "
                         "diffusers folder, or --demo")


def pickle_weights(folder: Path) -> list[Path]:
    """Weight files that would be unpickled: those of components that have no safetensors."""
    index = folder / "model_index.json"
    components = _components(index)
    found: list[Path] = []
    for name in components:
        sub = folder / name
        if not sub.is_dir():
            continue
        files = [f for f in sub.iterdir() if f.is_file()]
        if any(f.suffix in SAFE_SUFFIXES for f in files):
            continue
        found.extend(sorted(f for f in files if f.suffix in PICKLE_SUFFIXES))
    return found


def _components(index: Path) -> list[str]:
    try:
        data = json.loads(index.read_text())
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"model: cannot read {index}: {error}") from None
    return [k for k, v in data.items() if not k.startswith("_") and isinstance(v, list) and v[0]]


def check_folder(folder: Path, allow_pickle: bool) -> None:
    if not (folder / "model_index.json").is_file():
        raise ModelLoadError(f"model: {folder} has no model_index.json, so it is not a diffusers pipeline "
                             "folder; give the folder that contains model_index.json")
    risky = pickle_weights(folder)
    if risky and not allow_pickle:
        names = ", ".join(str(p.relative_to(folder)) for p in risky[:3])
        raise ModelLoadError(f"model: {folder} has weights only in pickle format ({names}), which can run "
                             "code when loaded; convert them to .safetensors or pass --allow-pickle "
                             "if you trust the source")


def check_single_file(path: Path, allow_pickle: bool):
    """The checkpoint's header (None for a pickle file), after refusing what cannot load."""
    from tui.engine.families import family_from_checkpoint
    from tui.engine.safetensors_header import HeaderError, read_header

    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ModelLoadError(f"model: {path.name} is a pickle checkpoint, which can run code when loaded; "
                                 "use a .safetensors file or pass --allow-pickle if you trust the source")
        return None
    if suffix not in SAFE_SUFFIXES:
        raise ModelLoadError(f"model: {path.name} is not a model; give a .safetensors or .gguf checkpoint, a "
                             "diffusers folder (with model_index.json), a Hub id, or --demo")
    try:
        header = read_header(path)
    except HeaderError as error:
        raise ModelLoadError(f"model: {path.name} cannot be used: {error}") from None
    if header.truncated:
        raise ModelLoadError(f"model: {path.name} is truncated ({header.file_bytes:,} of "
                             f"{8 + header.header_bytes + header.data_bytes:,} bytes); download it again")
    if family_from_checkpoint(header.shapes.keys(), path.name) is None:
        raise ModelLoadError(f"model: {path.name} is not a whole Stable Diffusion checkpoint (it has no UNet "
                             "weights); it may be a LoRA, a VAE or an embedding")
    return header


class _ShapeOnly:
    """Stands in for a tensor where only its shape is looked at."""

    def __init__(self, shape):
        self.shape = shape


def single_file_config_repo(path: Path, header, allow_pickle: bool) -> str:
    """The Hub repository whose configs diffusers uses for this checkpoint (its own choice,
    made from tensor names and shapes, so sdtui and diffusers never disagree)."""
    from diffusers.loaders.single_file_utils import fetch_diffusers_config, load_single_file_checkpoint

    if header is not None:
        tensors = {name: _ShapeOnly(shape) for name, shape in header.shapes.items()}
    else:
        tensors = load_single_file_checkpoint(str(path), local_files_only=True)
    try:
        return fetch_diffusers_config(tensors)["pretrained_model_name_or_path"]
    except (KeyError, TypeError, AttributeError) as error:
        raise ModelLoadError(f"model: diffusers does not recognise {path.name} as a checkpoint it can "
                             f"load ({error})") from None


CONFIG_PATTERNS = ["model_index.json", "*/*.json", "*/*.txt", "*/*.model", "*/*.jinja"]


def single_file_configs(repo_id: str) -> Path:
    """The local folder of ``repo_id``'s configs, fetching the configs (a few kilobytes, no
    weights) only when the Hub may be used. Never goes online behind the user's back: offline,
    a missing config is an error that names the repository."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    from tui.engine.download import hub_cache_dir

    cache = hub_cache_dir()
    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=CONFIG_PATTERNS, local_files_only=True,
                                        cache_dir=cache))
        if _configs_complete(folder):
            return folder
    except LocalEntryNotFoundError:
        pass
    needed = (f"model: this checkpoint needs the configs of {repo_id}, which are not in the local Hugging Face "
              f"cache and {{reason}}; fetch them once online with `hf download {repo_id} --include "
              f"'*.json' '*.txt'` (a few KB), or load a diffusers folder instead")
    if hub_offline():
        raise ModelLoadError(needed.format(reason="HF_HUB_OFFLINE is set"))
    if not hub_reachable(repo_id):
        raise ModelLoadError(needed.format(reason="the Hub cannot be reached"))
    log.info("fetching the configs of %s (no weights)", repo_id)
    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=CONFIG_PATTERNS, cache_dir=cache))
    except (HfHubHTTPError, OSError, LocalEntryNotFoundError) as error:
        raise ModelLoadError(needed.format(reason=f"fetching them failed ({first_line(error)})")) from None
    if not _configs_complete(folder):
        raise ModelLoadError(f"model: {repo_id} on the Hub has no diffusers configs for this checkpoint")
    return folder


def _configs_complete(folder: Path) -> bool:
    if not (folder / "model_index.json").is_file():
        return False
    for name in _components(folder / "model_index.json"):
        sub = folder / name
        if name in ("safety_checker", "feature_extractor"):
            continue
        if not sub.is_dir() or not any(f.suffix in (".json", ".txt", ".model") for f in sub.iterdir()):
            return False
    return True


@dataclass(frozen=True)
class Loader:
    """Builds the pipeline at a torch dtype (call it); ``parts``: the folder its components come from
    (a single transformer file's aside), where a component freed from memory is read again; None for
    a pipeline built in memory or from one checkpoint file."""

    build: Callable[[Any], Any]
    parts: LocalModel | None = None
    use_safetensors: bool | None = True  # as from_pretrained was given it

    def __call__(self, torch_dtype):
        return self.build(torch_dtype)


def whole_checkpoint_loader(path: Path, header, allow_pickle: bool) -> Loader:
    """A checkpoint holding the whole pipeline (SD, SDXL): its diffusers configs found in the local
    cache, raising ModelLoadError before anything is unloaded; the function returned loads it
    through diffusers' single-file loader at a torch dtype."""
    import diffusers

    configs = single_file_configs(single_file_config_repo(path, header, allow_pickle))
    index = json.loads((configs / "model_index.json").read_text())
    pipeline_class = getattr(diffusers, str(index.get("_class_name", "")), None)
    if pipeline_class is None or not hasattr(pipeline_class, "from_single_file"):
        raise ModelLoadError(f"model: {path.name} needs {index.get('_class_name')!r}, which cannot load "
                             "single files")

    def load(torch_dtype):
        try:
            return pipeline_class.from_single_file(str(path), config=str(configs), torch_dtype=torch_dtype,
                                                   local_files_only=True, **_without_safety_checker(index))
        except LOADER_ERRORS as error:
            raise ModelLoadError(f"model: loading {path.name} failed: {first_line(error)}") from None

    return Loader(load)


# --- Hugging Face Hub -------------------------------------------------------------------


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_endpoint() -> str:
    """The Hub's address, read from the environment now (HF_ENDPOINT), not at import time."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_reachable(repo_id: str = "", timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the Hub answers, asked through huggingface_hub's own HTTP client: the same proxy
    settings (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) and certificates its downloads use. Any answer
    below 500 counts (a 404 still says the Hub is there); a proxy's 502 or a timeout does not.
    Bounded by ``timeout``, name lookup included, so an offline machine hears so in seconds."""
    from huggingface_hub.utils import get_session

    url = f"{hub_endpoint()}/api/models/{repo_id}" if repo_id else f"{hub_endpoint()}/api/models?limit=1"
    result: list[bool] = []

    def probe() -> None:
        try:
            response = get_session().get(url, timeout=timeout, follow_redirects=False)
            result.append(response.status_code < 500)
        except Exception as error:  # the client's connect, proxy and timeout errors share no base here
            log.info("the Hub at %s did not answer: %s", hub_endpoint(), first_line(error))
            result.append(False)

    worker = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout of its own
    worker.start()
    worker.join(timeout + 0.5)
    return bool(result and result[0])


def offline_message(repo_id: str, reason: str) -> str:
    return (f"model: {repo_id} is not in the local Hugging Face cache and {reason}; "
            "give a local diffusers folder with --model PATH, or try the demo model with --demo")


# Never fetched nor loaded: sdtui does not run the safety checker (as A1111 and ComfyUI do not),
# and it is 1.2 GB of SD 1.5's 5 GB.
SKIPPED_COMPONENTS = ("safety_checker",)
FP16 = "fp16"


def weight_variant(filename: str) -> str | None:
    """ "diffusion_pytorch_model.fp16.safetensors" -> "fp16"; "model.safetensors" -> None (the full
    weights); shards ("...-00001-of-00002.fp16.safetensors") name their variant the same way."""
    parts = filename.split(".")
    return parts[-2] if len(parts) >= 3 else None


def _is_weight(filename: str, allow_pickle: bool) -> bool:
    return filename.endswith(SAFE_SUFFIXES + ((".bin",) if allow_pickle else ()))


def weighted_components(components: list[str], files: list[str]) -> list[str]:
    """The components with weights of their own (unet, vae, text encoders): those with a config.json."""
    return [name for name in components if name not in SKIPPED_COMPONENTS and f"{name}/config.json" in files]


def complete_variants(components: list[str], files: list[str], allow_pickle: bool) -> set[str | None]:
    """The weight variants (None: the full weights; "fp16") that every weighted component has."""
    weighted = weighted_components(components, files)
    found: set[str | None] = set()
    for variant in (None, FP16):
        if weighted and all(any(f.startswith(name + "/") and "/" not in f[len(name) + 1:]
                                and _is_weight(f, allow_pickle) and weight_variant(f.rsplit("/", 1)[1]) == variant
                                for f in files) for name in weighted):
            found.add(variant)
    return found


def choose_variant(present: set[str | None], prefer_fp16: bool) -> str | None:
    """fp16 where the device runs float16 and the weights exist in it (half the download and the
    memory); else the full weights; else fp16 weights, which diffusers casts up to float32."""
    if prefer_fp16 and FP16 in present:
        return FP16
    return None if None in present else FP16


def _download_patterns(components: list[str], allow_pickle: bool, variant: str | None,
                       without_weights_of: Collection[str] = ()) -> tuple[list[str], list[str]]:
    """Exactly the files the pipeline loads: each component's configs and its weights in one variant
    (only the configs of the components in ``without_weights_of``)."""
    allow = ["model_index.json"]
    for name in components:
        if name in SKIPPED_COMPONENTS:
            continue
        # chat_template.jinja: the Qwen and Mistral tokenizers' chat template, a file of its own in transformers 5
        allow += [f"{name}/*.json", f"{name}/*.txt", f"{name}/*.model", f"{name}/*.jinja"]
        if name in without_weights_of:
            continue
        allow.append(f"{name}/*.{variant}.safetensors" if variant else f"{name}/*.safetensors")
        if allow_pickle:
            allow.append(f"{name}/*.{variant}.bin" if variant else f"{name}/*.bin")
    ignore = ["*non_ema*", "*.ema.*", "*.onnx*", "*.msgpack", "*.h5", "*.ot"]
    if variant is None:
        ignore.append("*.fp16.*")
    return allow, ignore


ProgressCallback = Callable[[int, int | None], None]


def _never() -> bool:
    return False


@dataclass(frozen=True)
class LocalModel:
    folder: Path
    variant: str | None = None  # passed to diffusers' from_pretrained


def _relative_files(folder: Path) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()]


def local_variant(folder: Path, allow_pickle: bool, prefer_fp16: bool,
                  without_weights_of: Collection[str] = ()) -> str | None | bool:
    """The variant to load a pipeline folder with, or False when no variant is complete (the components
    in ``without_weights_of`` left out)."""
    components = [name for name in _components(folder / "model_index.json") if name not in without_weights_of]
    present = complete_variants(components, _relative_files(folder), allow_pickle)
    return choose_variant(present, prefer_fp16) if present else False


def cached_snapshot(repo_id: str, allow_pickle: bool, prefer_fp16: bool = False,
                    without_weights_of: Collection[str] = ()) -> LocalModel | None:
    """The cached snapshot of ``repo_id``'s main revision if every component's weights (but those of
    ``without_weights_of``) are there in one variant; an interrupted download (no ``refs/main`` yet) or a
    half set does not count."""
    from tui.engine.download import hub_cache_dir
    from tui.engine.download import main_snapshot, repo_folder

    snapshot = main_snapshot(repo_folder(hub_cache_dir(), repo_id))
    if snapshot is None or not (snapshot / "model_index.json").is_file():
        return None
    variant = local_variant(snapshot, allow_pickle, prefer_fp16, without_weights_of)
    return None if variant is False else LocalModel(snapshot, variant)


def require_hub(name: str, repo_id: str) -> None:
    """Raise the one sentence that says why ``name`` (not in the cache) cannot be downloaded now, if it cannot:
    the Hub switched off, or not answering."""
    if hub_offline():
        raise ModelLoadError(offline_message(name, "HF_HUB_OFFLINE is set"))
    if not hub_reachable(repo_id):
        raise ModelLoadError(offline_message(name, "the Hub cannot be reached"))


@contextmanager
def download_errors(repo_id: str) -> Iterator[None]:
    """A download of ``repo_id``'s failures as one sentence each (ModelLoadError): no room on the disk,
    cancelled, gated, not found, or the connection failing."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    from tui.engine.download import DownloadCancelled, NotEnoughDisk
    from tui.engine.memory import format_bytes

    try:
        yield
    except NotEnoughDisk as error:
        raise ModelLoadError(f"model: downloading {repo_id} needs {format_bytes(error.needed)} more and the disk "
                             f"holding the Hugging Face cache ({error.where}) has {format_bytes(error.free)} free; "
                             "free some space, or set HF_HUB_CACHE to a folder on a larger disk") from None
    except DownloadCancelled:
        raise ModelLoadError(f"model: downloading {repo_id} was cancelled; choose it again to resume "
                             "where it stopped") from None
    except GatedRepoError:
        raise ModelLoadError(f"model: {repo_id} is gated; accept its licence on its Hub page, then log in "
                             "with the Hugging Face CLI (`hf auth login`) and try again") from None
    except RepositoryNotFoundError:
        raise NotOnHub(f"model: {repo_id} was not found on the Hub (or it is private and you are "
                       "not logged in: `hf auth login`)") from None
    except (HfHubHTTPError, OSError) as error:
        raise ModelLoadError(f"model: downloading {repo_id} failed: {first_line(error)}; "
                             "try again to resume") from None
    except ModelLoadError:
        raise
    except Exception as error:  # httpx errors (connection reset, timeouts) have no common base here
        if type(error).__module__.startswith(("httpx", "httpcore")):
            raise ModelLoadError(f"model: downloading {repo_id} failed: {type(error).__name__} "
                                 f"{first_line(error, '')}; try again to resume") from None
        raise


def fetch_from_hub(repo_id: str, allow_pickle: bool, on_progress: ProgressCallback,
                   cancelled: Callable[[], bool] = _never, prefer_fp16: bool = False,
                   without_weights_of: Collection[str] = ()) -> LocalModel:
    """The local snapshot of ``repo_id``, downloading what is missing when the Hub is reachable:
    the fp16 weights when ``prefer_fp16`` and the repository has them, never the safety checker, and
    only the configs of the components in ``without_weights_of`` (a single file's base repository
    without its transformer). A cancelled download keeps its files and partial file; the next call resumes."""
    from tui.engine.download import download_files, hub_cache_dir, list_remote_files, select_files

    cached = cached_snapshot(repo_id, allow_pickle, prefer_fp16, without_weights_of)
    if cached is not None:
        return cached
    require_hub(repo_id, repo_id)
    cache, endpoint = hub_cache_dir(), hub_endpoint()
    with download_errors(repo_id):
        commit, listed = list_remote_files(repo_id, endpoint)
        index = select_files(listed, ["model_index.json"], [])
        if not index:
            raise ModelLoadError(f"model: {repo_id} has no model_index.json, so it is not a diffusers pipeline; "
                                 f"for one .safetensors or .gguf file of it, give {repo_id}/FILE")
        first = download_files(repo_id, commit, index, cache, lambda *_: None, cancelled, endpoint, name_ref=False)
        components = _components(first / "model_index.json")
        weighted = [name for name in components if name not in without_weights_of]
        present = complete_variants(weighted, [f.path for f in listed], allow_pickle)
        if not present:
            raise ModelLoadError(f"model: {repo_id} has no complete set of .safetensors weights"
                                 + ("" if allow_pickle else "; if you trust it, --allow-pickle also takes .bin"))
        variant = choose_variant(present, prefer_fp16)
        if variant:
            log.info("downloading the %s weights of %s", variant, repo_id)
        allow, ignore = _download_patterns(components, allow_pickle, variant, without_weights_of)
        folder = download_files(repo_id, commit, select_files(listed, allow, ignore), cache, on_progress, cancelled,
                                endpoint)
        return LocalModel(folder, variant)


def pipeline_loader(folder: Path, allow_pickle: bool, variant: str | None = None,
                    quantize: str = "none") -> Loader:
    """Check a pipeline folder (SD 1.x, 2.x, SDXL, Turbo), raising ModelLoadError before anything is
    unloaded; the function returned loads it through diffusers' auto pipeline at a torch dtype, the
    components the ``quantize`` setting names quantized to NF4 as they load (bitsandbytes places them on
    the GPU itself; ``DiffusionPipeline.to`` then moves only the others)."""
    from tui.engine.sdnq import folder_quantization, import_sdnq, missing_message

    check_folder(folder, allow_pickle)
    components = _components(folder / "model_index.json")
    stored_quantized = folder_quantization(folder)  # an SDNQ repository's components
    if stored_quantized and not import_sdnq():
        raise ModelLoadError(missing_message(folder))
    index = json.loads((folder / "model_index.json").read_text())
    # An editing pipeline (Qwen-Image-Edit's) has no text-to-image counterpart: it loads as itself.
    edits = str(index.get("_class_name", "")) in {f.pipelines.edit for f in FAMILIES if f.pipelines.edit}

    def load(torch_dtype):
        from diffusers import AutoPipelineForText2Image, DiffusionPipeline

        from tui.engine.nf4 import pipeline_quantization
        from tui.engine.qwen_vl import processor_components

        try:
            return (DiffusionPipeline if edits else AutoPipelineForText2Image).from_pretrained(
                str(folder), torch_dtype=torch_dtype, use_safetensors=not allow_pickle or None, variant=variant,
                local_files_only=True, **_without_safety_checker(components),
                **processor_components(folder, {name: index[name] for name in components}),
                **pipeline_quantization(quantize, [c for c in components if c not in stored_quantized], torch_dtype))
        except LOADER_ERRORS as error:
            raise ModelLoadError(f"model: loading {folder} failed: {first_line(error)}") from None

    return Loader(load, LocalModel(folder, variant), not allow_pickle or None)
