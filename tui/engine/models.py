"""Where a model comes from and how it is loaded: the demo model, a local diffusers
folder, or a Hugging Face Hub id (from the local cache, downloading when allowed).

Safetensors only by default: weights that would be unpickled (.ckpt .bin .pt .pth)
can run arbitrary code, so they are refused unless the user allows pickle.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from tui.engine.demo import DEMO_LABEL, DEMO_MODEL_ID

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl", ".pickle")
SAFE_SUFFIXES = (".safetensors",)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_PROBE_TIMEOUT_S = 3.0


class ModelLoadError(Exception):
    """A model could not be found or loaded; the message says what to do."""


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "demo" | "folder" | "hub" | "file"
    ref: str
    label: str


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
        return ModelSource("file", str(path.resolve()), path.name)
    if _HUB_ID.match(text) and not text.startswith((".", "~")):
        return ModelSource("hub", text, text)
    raise ModelLoadError(f"model: {text!r} is neither an existing folder nor a Hub id like "
                         f"owner/name; give --model PATH to a diffusers folder, or --demo")


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


def check_single_file(path: Path, allow_pickle: bool) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
        raise ModelLoadError(f"model: {path.name} is a pickle checkpoint, which can run code when loaded; "
                             "use a .safetensors file or pass --allow-pickle if you trust the source")
    raise ModelLoadError(f"model: {path.name} is a single-file checkpoint; sdtui loads diffusers folders "
                         "(with model_index.json) for now; give --model PATH to such a folder, or --demo")


# --- Hugging Face Hub -------------------------------------------------------------------


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """A quick TCP check, so an offline machine hears so in seconds, not after the Hub client's retries."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout of its own
    worker.start()
    worker.join(timeout)
    return bool(result and result[0])


def offline_message(repo_id: str, reason: str) -> str:
    return (f"model: {repo_id} is not in the local Hugging Face cache and {reason}; "
            "give a local diffusers folder with --model PATH, or try the demo model with --demo")


def _download_patterns(components: list[str], allow_pickle: bool) -> tuple[list[str], list[str]]:
    allow = ["model_index.json"]
    for name in components:
        allow += [f"{name}/*.json", f"{name}/*.txt", f"{name}/*.model", f"{name}/*.safetensors"]
        if allow_pickle:
            allow.append(f"{name}/*.bin")
    ignore = ["*.fp16.*", "*non_ema*", "*.ema.*", "*.onnx*", "*.msgpack", "*.h5", "*.ot"]
    return allow, ignore


ProgressCallback = Callable[[int, int | None], None]


def _progress_class(on_progress: ProgressCallback):
    """A tqdm class for huggingface_hub that reports byte counts instead of drawing a bar."""
    from tqdm.std import tqdm

    class ReportingTqdm(tqdm):
        _last_report = 0.0

        def __init__(self, *args, **kwargs):
            kwargs["file"] = open(os.devnull, "w")  # noqa: SIM115 (closed in close())
            kwargs["disable"] = False
            kwargs.pop("name", None)
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            result = super().update(n)
            now = time.monotonic()
            if self.unit == "B" and (now - self._last_report > 0.25 or (self.total and self.n >= self.total)):
                self._last_report = now
                on_progress(int(self.n), int(self.total) if self.total else None)
            return result

        def close(self):
            handle = self.fp
            super().close()
            try:
                handle.close()
            except Exception:
                pass

    return ReportingTqdm


def fetch_from_hub(repo_id: str, allow_pickle: bool, on_progress: ProgressCallback) -> Path:
    """The local snapshot folder of ``repo_id``, downloading what is missing when the Hub is reachable."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    def snapshot(local_only: bool) -> Path:
        index = hf_hub_download(repo_id, "model_index.json", local_files_only=local_only)
        allow, ignore = _download_patterns(_components(Path(index)), allow_pickle)
        return Path(snapshot_download(repo_id, allow_patterns=allow, ignore_patterns=ignore,
                                      local_files_only=local_only,
                                      tqdm_class=None if local_only else _progress_class(on_progress)))

    try:
        return snapshot(local_only=True)
    except LocalEntryNotFoundError:
        pass
    if hub_offline():
        raise ModelLoadError(offline_message(repo_id, "HF_HUB_OFFLINE is set"))
    if not hub_reachable():
        raise ModelLoadError(offline_message(repo_id, "the Hub cannot be reached"))
    try:
        return snapshot(local_only=False)
    except GatedRepoError:
        raise ModelLoadError(f"model: {repo_id} is gated; accept its licence on the Hub, then log in "
                             "with `hf auth login` and try again") from None
    except RepositoryNotFoundError:
        raise ModelLoadError(f"model: {repo_id} was not found on the Hub (or it is private and you are "
                             "not logged in: `hf auth login`)") from None
    except LocalEntryNotFoundError:
        raise ModelLoadError(offline_message(repo_id, "the download failed")) from None
    except (HfHubHTTPError, OSError) as error:
        raise ModelLoadError(f"model: downloading {repo_id} failed: {error}".splitlines()[0]) from None


def load_pipeline(folder: Path, torch_dtype, allow_pickle: bool):
    """Load any text-to-image pipeline folder (SD 1.x, 2.x, SDXL, Turbo) through diffusers' auto pipeline."""
    from diffusers import AutoPipelineForText2Image

    check_folder(folder, allow_pickle)
    extra = {}
    if "safety_checker" in _components(folder / "model_index.json"):
        extra = {"safety_checker": None, "requires_safety_checker": False}
    try:
        return AutoPipelineForText2Image.from_pretrained(
            str(folder), torch_dtype=torch_dtype, use_safetensors=not allow_pickle or None,
            local_files_only=True, **extra)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"model: loading {folder} failed: {first}") from None
