"""Small cached thumbnails, so listing thousands of images never decodes the full PNGs.

A thumbnail is keyed by the image's path, size and modification time, stored as a
small PNG in the cache folder, and rebuilt when the image changes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

THUMB_EDGE = 96


class ThumbnailCache:
    def __init__(self, folder: Path, edge: int = THUMB_EDGE):
        self.folder = Path(folder)
        self.edge = edge

    def _key(self, path: Path, stat: os.stat_result) -> Path:
        digest = hashlib.sha1(f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{self.edge}".encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.png"

    def get(self, image_path: str | Path | None):
        """A small PIL image of ``image_path``, or None when the file is missing or unreadable."""
        from PIL import Image

        if not image_path:
            return None
        path = Path(image_path)
        try:
            stat = path.stat()
        except OSError:
            return None
        cached = self._key(path, stat)
        try:
            with Image.open(cached) as small:
                return small.convert("RGB")
        except OSError:
            pass
        try:
            with Image.open(path) as full:
                full.draft("RGB", (self.edge, self.edge))
                small = full.convert("RGB")
                small.thumbnail((self.edge, self.edge), Image.Resampling.LANCZOS)
        except OSError:
            return None
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            temp = cached.with_suffix(".tmp")
            small.save(temp, format="PNG")
            os.replace(temp, cached)
        except OSError:
            pass  # an unwritable cache only costs speed
        return small
