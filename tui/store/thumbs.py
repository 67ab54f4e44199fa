"""Small cached thumbnails, so listing thousands of images never decodes the full PNGs.

A thumbnail is keyed by the image's path, size and modification time, stored as a
small PNG in the cache folder, and rebuilt when the image changes. The most recent ones
are also kept in memory, and the same image object is handed out again, so a widget
that already shows it knows it need not redraw.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

THUMB_EDGE = 96
MEMORY_ITEMS = 64


class ThumbnailCache:
    def __init__(self, folder: Path, edge: int = THUMB_EDGE):
        self.folder = Path(folder)
        self.edge = edge
        self._memory: OrderedDict[Path, object] = OrderedDict()

    def _remember(self, cached: Path, small) -> None:
        self._memory[cached] = small
        self._memory.move_to_end(cached)
        while len(self._memory) > MEMORY_ITEMS:
            self._memory.popitem(last=False)

    def put(self, image_path: str | Path, image) -> None:
        """Make the thumbnail of a just-saved image from the image in memory, instead of
        decoding the PNG that was just written."""
        from PIL import Image

        path = Path(image_path)
        try:
            cached = self._key(path, path.stat())
        except OSError:
            return
        small = image.convert("RGB")
        small.thumbnail((self.edge, self.edge), Image.Resampling.LANCZOS)
        self._store(cached, small)

    def _key(self, path: Path, stat: os.stat_result) -> Path:
        import hashlib

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
        if cached in self._memory:
            self._memory.move_to_end(cached)
            return self._memory[cached]
        try:
            with Image.open(cached) as small:
                small = small.convert("RGB")
            self._remember(cached, small)
            return small
        except OSError:
            pass
        try:
            with Image.open(path) as full:
                full.draft("RGB", (self.edge, self.edge))
                small = full.convert("RGB")
                small.thumbnail((self.edge, self.edge), Image.Resampling.LANCZOS)
        except OSError:
            return None
        self._store(cached, small)
        return small

    def _store(self, cached: Path, small) -> None:
        self._remember(cached, small)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            temp = cached.with_suffix(".tmp")
            small.save(temp, format="PNG", compress_level=1)
            os.replace(temp, cached)
        except OSError:
            pass  # an unwritable cache only costs speed
