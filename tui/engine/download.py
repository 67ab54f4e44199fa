"""Downloading a model repository into the Hugging Face cache, cancellably, resuming
interrupted files where they stopped.

huggingface_hub's own downloader discards a partly downloaded file when a download is
interrupted (its temporary names are unique per process), so stopping a 5 GB download
at 90% would start that file again. Here each file is fetched with HTTP range requests
into ``blobs/<hash>.sdtui-partial``, which survives cancel, quit and crashes; a finished
file is moved into place and linked from its snapshot exactly as huggingface_hub lays
out its cache, so diffusers, ``hf`` and every other tool see an ordinary cached model.

Each file is fetched under the lock huggingface_hub itself takes for it
(``.locks/models--owner--name/<hash>.lock``), so two sdtui processes, or sdtui and ``hf
download``, never write the same file at once: the second waits, then finds it done.
``refs/main`` is written last, once every file is in place, so no tool takes a half
download for a model.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger("tui.engine.download")
PARTIAL_SUFFIX = ".sdtui-partial"
CHUNK_BYTES = 256 * 1024
REPORT_INTERVAL_S = 0.25

ProgressCallback = Callable[[int, int | None], None]


# Room left on the disk after a download: the OS, logs and the app's own images need some.
DISK_MARGIN_BYTES = 512 * 1024**2


class NotEnoughDisk(Exception):
    """The disk holding the cache has less free space than a download still needs."""

    def __init__(self, needed: int, free: int, where: Path):
        super().__init__(f"{needed} bytes needed, {free} free at {where}")
        self.needed, self.free, self.where = needed, free, where


def free_bytes(path: Path) -> int:
    import shutil

    return shutil.disk_usage(path).free


def disk_shortfall(needed: int, free: int, margin: int = DISK_MARGIN_BYTES) -> bool:
    """Whether a download of ``needed`` more bytes would leave less than ``margin`` free."""
    return needed > 0 and needed + margin > free


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


def list_remote_files(repo_id: str, endpoint: str | None, revision: str = "main") -> tuple[str, list[RemoteFile]]:
    """The commit that ``revision`` points to and every file of the repository."""
    from huggingface_hub import HfApi

    info = HfApi(endpoint=endpoint).model_info(repo_id, revision=revision, files_metadata=True)
    files = []
    for sibling in info.siblings or []:
        blob = sibling.lfs.sha256 if sibling.lfs else sibling.blob_id
        size = sibling.lfs.size if sibling.lfs else sibling.size
        if not blob or size is None:
            raise OSError(f"the Hub did not describe {sibling.rfilename} fully")
        files.append(RemoteFile(sibling.rfilename, int(size), blob))
    return info.sha, files


def select_files(files: list[RemoteFile], allow: list[str], ignore: list[str]) -> list[RemoteFile]:
    from huggingface_hub.utils import filter_repo_objects

    return list(filter_repo_objects(files, allow_patterns=allow, ignore_patterns=ignore, key=lambda f: f.path))


def blob_lock(cache_dir: Path, repo_id: str, blob: str) -> Path:
    """Where huggingface_hub keeps the lock for one blob (file_download.hf_hub_download)."""
    return cache_dir / ".locks" / repo_folder(cache_dir, repo_id).name / f"{blob}.lock"


def download_files(repo_id: str, commit: str, files: list[RemoteFile], cache_dir: Path,
                   on_progress: ProgressCallback, cancelled: Callable[[], bool], endpoint: str | None = None,
                   name_ref: bool = True) -> Path:
    """The snapshot folder of ``commit`` with ``files`` present, fetching the missing ones; with
    ``name_ref``, ``refs/main`` then names it. Raises DownloadCancelled when ``cancelled()``
    turns true, and the huggingface_hub errors (gated, not found, HTTP) for the caller to explain."""
    repo = repo_folder(cache_dir, repo_id)
    snapshot = repo / "snapshots" / commit
    blobs = repo / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    missing = [f for f in files if not (snapshot / f.path).exists()]
    total = sum(f.size for f in missing)
    counted = {f.path: _partial_size(blobs, f) for f in missing}
    progress = _Progress(on_progress, sum(counted.values()), total)
    # Checked before the first byte: a 20-60 GB model that cannot fit fails now, not at 90%.
    needed = sum(f.size - counted[f.path] for f in missing
                 if not ((blobs / f.blob).exists() and (blobs / f.blob).stat().st_size == f.size))
    free = free_bytes(blobs)
    if disk_shortfall(needed, free):
        raise NotEnoughDisk(needed, free, cache_dir)
    if missing:
        from tui.engine.memory import format_bytes

        log.info("downloading %d files of %s: %s (%s already here)", len(missing), repo_id,
                 format_bytes(total), format_bytes(progress.done))
    for file in missing:
        blob = blobs / file.blob
        with _locked(blob_lock(cache_dir, repo_id, file.blob), file.path, cancelled):
            if not blob.exists() or blob.stat().st_size != file.size:
                _fetch(repo_id, commit, file, blobs, endpoint, progress, cancelled)
        # Whoever fetched it, the file now counts whole (another process may have finished it).
        progress.add(file.size - counted[file.path] - progress.fetched.pop(file.blob, 0))
        _link(snapshot / file.path, blob)
    progress.report(force=True)
    if name_ref:
        _write_atomically(repo / "refs" / "main", commit)  # last: a snapshot is only named once it is whole
    return snapshot


class _locked:
    """The blob's file lock, waited for in short steps so a cancel still stops the wait."""

    def __init__(self, path: Path, what: str, cancelled: Callable[[], bool]):
        from filelock import FileLock

        path.parent.mkdir(parents=True, exist_ok=True)
        self.lock, self.what, self.cancelled = FileLock(str(path)), what, cancelled

    def __enter__(self):
        from filelock import Timeout

        said = False
        while True:
            try:
                self.lock.acquire(timeout=0.2)
                return self
            except Timeout:
                if self.cancelled():
                    raise DownloadCancelled(self.what) from None
                if not said:
                    log.info("waiting for another download of %s to finish", self.what)
                    said = True

    def __exit__(self, *exc):
        self.lock.release()
        return False


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(text)
    os.replace(temp, path)


class _Progress:
    def __init__(self, on_progress: ProgressCallback, done: int, total: int):
        self.on_progress, self.done, self.total = on_progress, done, total
        self.last = 0.0
        self.fetched: dict[str, int] = {}  # bytes counted per blob by _fetch, settled per file

    def add(self, count: int, blob: str | None = None) -> None:
        self.done += count
        if blob:
            self.fetched[blob] = self.fetched.get(blob, 0) + count
        if count:
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
        progress.add(-start, file.blob)
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
                progress.add(-start, file.blob)
                start = 0
            with open(partial, "r+b" if start else "wb") as out:
                out.seek(start)
                out.truncate()
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    if cancelled():
                        raise DownloadCancelled(file.path)
                    out.write(chunk)
                    progress.add(len(chunk), file.blob)
                out.flush()
                os.fsync(out.fileno())
    got = partial.stat().st_size
    if got != file.size:
        raise OSError(f"{file.path} arrived with {got} of {file.size} bytes; try again to resume")
    partial.replace(blobs / file.blob)


def _link(target: Path, blob: Path) -> None:
    """Link a snapshot file to its blob the way huggingface_hub does (relative symlink), or
    copy where symlinks are not allowed (some Windows setups). The link is made beside the
    target and renamed onto it, so two processes linking the same file both succeed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        temp.symlink_to(os.path.relpath(blob, target.parent))
    except OSError:
        import shutil

        shutil.copy2(blob, temp)
    os.replace(temp, target)


# --- interrupted downloads ----------------------------------------------------------------

STALE_AFTER_S = 14 * 24 * 3600  # a partial file untouched this long is not coming back


@dataclass(frozen=True)
class InterruptedDownload:
    repo_id: str
    bytes_here: int  # fetched so far: whole files and partial ones
    named: bool  # refs/main exists: an earlier download finished, this one adds files


def interrupted_downloads(cache_dir: Path) -> list[InterruptedDownload]:
    """Repositories with sdtui partial files, or with files but no ``refs/main`` yet."""
    found = []
    for repo in sorted(cache_dir.glob("models--*")):
        partials = any((repo / "blobs").glob("*" + PARTIAL_SUFFIX))
        named = (repo / "refs" / "main").exists()
        if not partials and (named or not (repo / "blobs").is_dir()):
            continue
        size = 0
        for blob in (repo / "blobs").iterdir() if (repo / "blobs").is_dir() else ():
            try:
                size += blob.stat().st_size
            except OSError:
                pass
        if partials or size:
            found.append(InterruptedDownload(_repo_id(repo), size, named))
    return found


def _repo_id(repo: Path) -> str:
    """owner/name from the cache's folder name, models--owner--name."""
    return repo.name.removeprefix("models--").replace("--", "/")


def remove_stale_partials(cache_dir: Path, now: float | None = None,
                          max_age_s: float = STALE_AFTER_S) -> tuple[int, int]:
    """Delete sdtui partial files untouched for ``max_age_s`` whose download is not running
    (its lock is free); returns (files, bytes) removed."""
    from filelock import FileLock, Timeout

    now = time.time() if now is None else now
    removed = freed = 0
    # Only the partial files are looked at: the picker, which calls this, sizes the downloads itself.
    for partial in sorted(cache_dir.glob(f"models--*/blobs/*{PARTIAL_SUFFIX}")):
        try:
            info = partial.stat()
        except OSError:
            continue
        if now - info.st_mtime < max_age_s:
            continue
        blob = partial.name.removesuffix(PARTIAL_SUFFIX)
        lock_path = blob_lock(cache_dir, _repo_id(partial.parent.parent), blob)
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(lock_path))
            lock.acquire(timeout=0)
        except (Timeout, OSError):
            continue  # being downloaded right now, or the lock cannot be made
        try:
            partial.unlink(missing_ok=True)
            removed, freed = removed + 1, freed + info.st_size
        finally:
            lock.release()
    if removed:
        log.info("removed %d stale partial download file(s), %d bytes, untouched for %d days", removed, freed,
                 max_age_s // 86400)
    return removed, freed


def hub_cache_dir() -> Path:
    """The Hugging Face cache as huggingface_hub would find it, read from the environment now
    (not when huggingface_hub was imported), so a changed HF_HUB_CACHE is honoured."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache_home = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(cache_home).expanduser() / "huggingface" / "hub"
