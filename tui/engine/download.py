"""Downloading a model repository into the Hugging Face cache, cancellably, resuming
interrupted files where they stopped.

huggingface_hub's own downloader discards a partly downloaded file when a download is
interrupted (its temporary names are unique per process), so stopping a 5 GB download
at 90% would start that file again. Here each file is fetched with HTTP range requests
into ``blobs/<hash>.sdtui-partial``, which survives cancel, quit and crashes; a finished
file is moved into place and linked from its snapshot exactly as huggingface_hub lays
out its cache, so diffusers, ``hf`` and every other tool see an ordinary cached model.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger("tui.engine.download")
PARTIAL_SUFFIX = ".sdtui-partial"
CHUNK_BYTES = 256 * 1024
REPORT_INTERVAL_S = 0.25

ProgressCallback = Callable[[int, int | None], None]


class DownloadCancelled(Exception):
    """The user stopped the download; what was fetched stays for next time."""


@dataclass(frozen=True)
class RemoteFile:
    path: str  # inside the repository
    size: int
    blob: str  # the cache's name for its content: the LFS sha256, or the git blob id


def repo_folder(cache_dir: Path, repo_id: str) -> Path:
    return cache_dir / ("models--" + repo_id.replace("/", "--"))


def main_snapshot(repo: Path) -> Path | None:
    """The snapshot folder that ``refs/main`` names, if both exist."""
    try:
        revision = (repo / "refs" / "main").read_text().strip()
    except OSError:
        return None
    snapshot = repo / "snapshots" / revision
    return snapshot if revision and snapshot.is_dir() else None


def list_remote_files(repo_id: str, allow: list[str], ignore: list[str], endpoint: str | None,
                      revision: str = "main") -> tuple[str, list[RemoteFile]]:
    """The commit that ``revision`` points to and the files matching the patterns."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects

    info = HfApi(endpoint=endpoint).model_info(repo_id, revision=revision, files_metadata=True)
    siblings = filter_repo_objects(info.siblings or [], allow_patterns=allow, ignore_patterns=ignore,
                                   key=lambda s: s.rfilename)
    files = []
    for sibling in siblings:
        blob = sibling.lfs.sha256 if sibling.lfs else sibling.blob_id
        size = sibling.lfs.size if sibling.lfs else sibling.size
        if not blob or size is None:
            raise OSError(f"the Hub did not describe {sibling.rfilename} fully")
        files.append(RemoteFile(sibling.rfilename, int(size), blob))
    return info.sha, files


def download_snapshot(repo_id: str, allow: list[str], ignore: list[str], cache_dir: Path,
                      on_progress: ProgressCallback, cancelled: Callable[[], bool],
                      endpoint: str | None = None) -> Path:
    """The snapshot folder of ``repo_id`` with every matching file present, fetching the
    missing ones. Raises DownloadCancelled when ``cancelled()`` turns true, and the
    huggingface_hub errors (gated, not found, HTTP) for the caller to explain."""
    commit, files = list_remote_files(repo_id, allow, ignore, endpoint)
    repo = repo_folder(cache_dir, repo_id)
    snapshot = repo / "snapshots" / commit
    blobs = repo / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    missing = [f for f in files if not (snapshot / f.path).exists()]
    total = sum(f.size for f in missing)
    done = sum(_partial_size(blobs, f) for f in missing)
    progress = _Progress(on_progress, done, total)
    if missing:
        log.info("downloading %d files of %s (%d bytes, %d already here)", len(missing), repo_id, total, done)
    for file in missing:
        blob = blobs / file.blob
        if not blob.exists() or blob.stat().st_size != file.size:
            _fetch(repo_id, commit, file, blobs, endpoint, progress, cancelled)
        _link(snapshot / file.path, blob)
    progress.report(force=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)  # last: a snapshot is only named once it is whole
    return snapshot


class _Progress:
    def __init__(self, on_progress: ProgressCallback, done: int, total: int):
        self.on_progress, self.done, self.total = on_progress, done, total
        self.last = 0.0

    def add(self, count: int) -> None:
        self.done += count
        self.report()

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= REPORT_INTERVAL_S:
            self.last = now
            self.on_progress(self.done, self.total or None)


def _partial_size(blobs: Path, file: RemoteFile) -> int:
    if (blobs / file.blob).exists():
        return file.size
    try:
        return min((blobs / (file.blob + PARTIAL_SUFFIX)).stat().st_size, file.size)
    except OSError:
        return 0


def _fetch(repo_id: str, commit: str, file: RemoteFile, blobs: Path, endpoint: str | None, progress: _Progress,
           cancelled: Callable[[], bool]) -> None:
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    partial = blobs / (file.blob + PARTIAL_SUFFIX)
    start = partial.stat().st_size if partial.exists() else 0
    if start > file.size:  # not this file after all: start again
        progress.add(-start)
        partial.unlink()
        start = 0
    if start < file.size:
        headers = build_hf_headers()
        if start:
            headers["Range"] = f"bytes={start}-"
        url = hf_hub_url(repo_id, file.path, revision=commit, endpoint=endpoint)
        with get_session().stream("GET", url, headers=headers, follow_redirects=True, timeout=30) as response:
            if response.status_code >= 400:
                response.read()
                hf_raise_for_status(response)
            if start and response.status_code != 206:  # the server ignored the range: take it all
                progress.add(-start)
                start = 0
            with open(partial, "r+b" if start else "wb") as out:
                out.seek(start)
                out.truncate()
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    if cancelled():
                        raise DownloadCancelled(file.path)
                    out.write(chunk)
                    progress.add(len(chunk))
                out.flush()
                os.fsync(out.fileno())
    got = partial.stat().st_size
    if got != file.size:
        raise OSError(f"{file.path} arrived with {got} of {file.size} bytes; try again to resume")
    partial.replace(blobs / file.blob)


def _link(target: Path, blob: Path) -> None:
    """Link a snapshot file to its blob the way huggingface_hub does (relative symlink), or
    copy where symlinks are not allowed (some Windows setups)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    try:
        target.symlink_to(os.path.relpath(blob, target.parent))
    except OSError:
        import shutil

        shutil.copy2(blob, target)
