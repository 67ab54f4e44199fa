"""One file of a Hub repository, named as owner/name/path/to/file.gguf (or .safetensors): found in the local
Hugging Face cache, or downloaded alone through download.py as whole repositories are (the same locks, resume,
progress and disk check), with the same sentences when the Hub is off, gated or has no such repository."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from tui.engine.download import (RemoteFile, download_files, hub_cache_dir, list_remote_files, main_snapshot,
                                 repo_folder)
from tui.engine.models import (HUB_FILE_SUFFIXES, ModelLoadError, NotOnHub, ProgressCallback, download_errors,
                               hub_endpoint, require_hub, split_hub_file)

FILES_NAMED = 4  # a missing file's sentence names at most this many of the repository's files


def _never() -> bool:
    return False


def cached_hub_file(ref: str, cache_dir: Path | None = None) -> Path | None:
    """The file ``ref`` names in its repository's main snapshot in the cache, if it is there."""
    parts = split_hub_file(ref)
    if parts is None:
        return None
    repo_id, filename = parts
    snapshot = main_snapshot(repo_folder(cache_dir or hub_cache_dir(), repo_id))
    path = snapshot / filename if snapshot is not None else None
    return path if path is not None and path.is_file() else None


def fetch_hub_file(ref: str, on_progress: ProgressCallback, cancelled: Callable[[], bool] = _never) -> Path:
    """The local path of the file ``ref`` names, downloading it (and nothing else of its repository) when
    it is not in the cache and the Hub may be used; ModelLoadError says why not in one sentence."""
    parts = split_hub_file(ref)
    if parts is None:
        raise ModelLoadError(f"model: {ref!r} is not one file of a Hub repository; write it as "
                             "owner/name/FILE.safetensors or owner/name/FILE.gguf")
    cached = cached_hub_file(ref)
    if cached is not None:
        return cached
    repo_id, filename = parts
    require_hub(ref, repo_id)
    endpoint = hub_endpoint()
    with download_errors(repo_id):
        commit, listed = list_remote_files(repo_id, endpoint)
        wanted = [file for file in listed if file.path == filename]
        if not wanted:
            raise NotOnHub(missing_file_message(repo_id, filename, listed))
        folder = download_files(repo_id, commit, wanted, hub_cache_dir(), on_progress, cancelled, endpoint)
    return folder / filename


def missing_file_message(repo_id: str, filename: str, listed: list[RemoteFile]) -> str:
    loadable = sorted(file.path for file in listed if file.path.lower().endswith(HUB_FILE_SUFFIXES))
    if not loadable:
        return f"model: {repo_id} on the Hub has no file {filename}, nor any .safetensors or .gguf file"
    named = ", ".join(loadable[:FILES_NAMED]) + (f" and {len(loadable) - FILES_NAMED} more"
                                                 if len(loadable) > FILES_NAMED else "")
    return f"model: {repo_id} on the Hub has no file {filename}; its model files are {named}"
