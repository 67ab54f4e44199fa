"""The history of every generation, in SQLite (WAL), beside the images it points to.

Writing an image follows one order so that a crash at any moment leaves a state that
``reconcile()`` can explain: the PNG is written under a temporary name, the row is
inserted inside an open transaction, the file is renamed to its final name, and only
then does the row commit. A crash leaves at worst a temporary file (removed on the next
start) or an image without a row (adopted from its own metadata on the next start).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from tui.engine.request import GenerationRequest
from tui.store.images import SDTUI_KEY, png_text, prompt_slug, write_png

log = logging.getLogger("tui.store")
SCHEMA_VERSION = 3  # 2: torch, OS and chip of the machine that made each image; 3: extra (LoRAs, embeddings)
STATUSES = ("done", "cancelled", "failed")
TEMP_SUFFIX = ".partial"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    prompt TEXT NOT NULL,
    negative_prompt TEXT NOT NULL DEFAULT '',
    steps INTEGER NOT NULL,
    guidance REAL NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    seed INTEGER,
    scheduler TEXT NOT NULL,
    count INTEGER NOT NULL DEFAULT 1,
    image_index INTEGER NOT NULL DEFAULT 0,
    model TEXT NOT NULL DEFAULT '',
    device TEXT NOT NULL DEFAULT '',
    dtype TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL CHECK (status IN ('done', 'cancelled', 'failed')),
    error TEXT,
    load_s REAL,
    first_step_s REAL,
    total_s REAL,
    it_per_s REAL,
    peak_memory INTEGER,
    image_path TEXT,
    missing INTEGER NOT NULL DEFAULT 0,
    torch_version TEXT NOT NULL DEFAULT '',
    os_version TEXT NOT NULL DEFAULT '',
    chip TEXT NOT NULL DEFAULT '',
    extra TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS generations_newest ON generations (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS generations_path ON generations (image_path);
"""


# What the engine's description of an image holds beyond its machine, kept as JSON in ``extra``
# (with the request's wildcard template): the LoRAs and embeddings it used, by name, with A1111's
# short hashes, and a GGUF transformer's quantization ("Q8_0").
EXTRA_KEYS = ("lora_hashes", "ti_hashes", "quantization")


def info_fields(info: dict[str, Any]) -> dict[str, str]:
    """The history columns for what made an image, from the engine's description of it."""
    extra = {key: info[key] for key in EXTRA_KEYS if info.get(key)}
    return {"model": info.get("model", ""), "device": info.get("device", ""), "dtype": info.get("dtype", ""),
            "torch_version": info.get("torch", ""), "os_version": info.get("os", ""), "chip": info.get("chip", ""),
            "extra": json.dumps(extra, ensure_ascii=False, sort_keys=True) if extra else ""}


@dataclass
class HistoryEntry:
    prompt: str
    negative_prompt: str
    steps: int
    guidance: float
    width: int
    height: int
    seed: int | None
    scheduler: str
    status: str
    count: int = 1
    image_index: int = 0
    model: str = ""
    device: str = ""
    dtype: str = ""
    error: str | None = None
    load_s: float | None = None
    first_step_s: float | None = None
    total_s: float | None = None
    it_per_s: float | None = None
    peak_memory: int | None = None
    image_path: str | None = None
    missing: int = 0
    torch_version: str = ""
    os_version: str = ""
    chip: str = ""
    extra: str = ""  # JSON: see EXTRA_KEYS
    created_at: str = ""
    id: int | None = None

    @classmethod
    def for_request(cls, request: GenerationRequest, status: str, **columns: Any) -> "HistoryEntry":
        # What the request adds to the columns goes with the LoRAs in ``extra``: its wildcard
        # template, and for image-to-image its source, strength and upscale.
        added = {key: value for key, value in (("template", request.template), ("source", request.init_image),
                                               ("hires", request.hires), ("shift", request.shift),
                                               ("edit", request.edit)) if value}
        if (request.init_image or request.hires) and not request.edit:
            added["strength"] = request.strength
        if added:
            extra = {**json.loads(columns.get("extra") or "{}"), **added}
            columns["extra"] = json.dumps(extra, ensure_ascii=False, sort_keys=True)
        return cls(prompt=request.prompt, negative_prompt=request.negative_prompt, steps=request.steps,
                   guidance=request.guidance, width=request.width, height=request.height, seed=request.seed,
                   scheduler=request.scheduler, count=request.count, status=status, **columns)

    def extras(self) -> dict[str, Any]:
        try:
            value = json.loads(self.extra) if self.extra else {}
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def request(self) -> GenerationRequest:
        """The request that re-makes this image alone: its own seed, count 1."""
        extras = self.extras()
        source = {"init_image": str(extras.get("source", "")), "hires": float(extras.get("hires", 0.0)),
                  "shift": float(extras.get("shift", 0.0)), "edit": extras.get("edit") is True}
        if "strength" in extras:
            source["strength"] = float(extras["strength"])
        return GenerationRequest(prompt=self.prompt, negative_prompt=self.negative_prompt, steps=self.steps,
                                 guidance=self.guidance, width=self.width, height=self.height, seed=self.seed,
                                 scheduler=self.scheduler, count=1, **source)


_COLUMNS = [f.name for f in fields(HistoryEntry) if f.name != "id"]


@dataclass
class ReconcileReport:
    marked_missing: int = 0
    found_again: int = 0
    adopted: int = 0
    temp_removed: int = 0
    unreadable: int = 0
    moved_aside: str | None = None

    @property
    def changed(self) -> bool:
        """Whether anything was repaired. Foreign PNGs left alone are not news on every start."""
        return any((self.marked_missing, self.found_again, self.adopted, self.temp_removed, self.moved_aside))

    def message(self) -> str:
        parts = []
        if self.moved_aside:
            parts.append(f"the history database was unreadable and was moved to {self.moved_aside}; "
                         "a new one was started")
        if self.marked_missing:
            parts.append(f"{self.marked_missing} image file(s) are gone and are marked missing")
        if self.found_again:
            parts.append(f"{self.found_again} missing image file(s) are back")
        if self.adopted:
            parts.append(f"{self.adopted} image(s) without a history row were added back from their metadata")
        if self.temp_removed:
            parts.append(f"{self.temp_removed} unfinished image file(s) from an interrupted run were removed")
        if self.unreadable:
            parts.append(f"{self.unreadable} PNG file(s) in the outputs folder have no sdtui metadata and "
                         "were left alone")
        return "history: " + "; ".join(parts) if parts else "history: consistent"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class History:
    def __init__(self, db_path: Path, outputs_dir: Path):
        self.db_path = Path(db_path)
        self.outputs_dir = Path(outputs_dir)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.moved_aside: str | None = None
        self._lock = threading.RLock()  # one connection, shared by the UI and the worker thread
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as error:
            self._db = self._open_after_moving_aside(error)

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=10.0, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=10000")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"schema version {version} is newer than this sdtui understands")
            if version < SCHEMA_VERSION:  # writing only when needed leaves a damaged file as it was found
                db.executescript(_SCHEMA)
                _add_missing_columns(db)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _open_after_moving_aside(self, error: Exception) -> sqlite3.Connection:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.db_path.with_name(f"{self.db_path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():  # never replace an earlier damaged copy: it may be all someone has
            n += 1
            aside = self.db_path.with_name(f"{self.db_path.name}.corrupt-{stamp}-{n}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(str(self.db_path) + suffix)
            if source.exists():
                os.replace(source, Path(str(aside) + suffix))
        log.error("history database %s was unreadable (%s); moved to %s", self.db_path, error, aside)
        self.moved_aside = str(aside)
        return self._open()

    def _recover(self, error: Exception) -> None:
        """The database turned out damaged after it opened: move it aside and start a new one."""
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = self._open_after_moving_aside(error)

    def _retrying_after_corruption(self, operation):
        """Run ``operation``; if SQLite finds the file damaged, move it aside, start a new
        database and run it once more there, so a write is not lost and a read gives an
        empty result rather than an error."""
        try:
            return operation()
        except sqlite3.DatabaseError as error:
            if not _is_corruption(error):
                raise
            self._recover(error)
            return operation()

    def verify(self) -> None:
        """Check every page (PRAGMA quick_check: 0.16 s for 100,000 rows); a damaged
        database is moved aside. Opening alone finds only a damaged header."""
        result = self._query("PRAGMA quick_check")[0][0]
        if result != "ok":
            self._recover(sqlite3.DatabaseError(f"quick_check: {result}"))

    def close(self) -> None:
        self._db.close()

    # --- writing ------------------------------------------------------------------------

    def add(self, entry: HistoryEntry) -> int:
        """Record a generation that has no image (cancelled or failed)."""
        entry.created_at = entry.created_at or utc_now()

        def insert() -> int:
            with self._transaction():
                return self._insert(entry)
        return self._retrying_after_corruption(insert)

    def _insert(self, entry: HistoryEntry) -> int:
        values = asdict(entry)
        values["seed"] = _seed_to_sqlite(values["seed"])
        cursor = self._db.execute(
            f"INSERT INTO generations ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})",
            [values[c] for c in _COLUMNS])
        entry.id = cursor.lastrowid
        return entry.id

    def _transaction(self):
        return _Transaction(self._db, self._lock)

    def _query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        def run() -> list[sqlite3.Row]:
            with self._lock:
                return self._db.execute(sql, params).fetchall()
        return self._retrying_after_corruption(run)

    def save_image(self, image, request: GenerationRequest, seed: int, index: int, entry: HistoryEntry,
                   info: dict[str, Any] | None = None, output: Path | None = None,
                   outputs_dir: Path | None = None) -> Path:
        """Write the PNG and its row in the crash-safe order; returns the image's path.

        ``output`` names the file exactly (replacing any file there); otherwise a new
        name is made under ``outputs_dir`` (a client's setting), else the outputs folder.
        """
        entry.created_at = entry.created_at or utc_now()
        if output is not None:
            final = Path(output).expanduser().resolve()
            final.parent.mkdir(parents=True, exist_ok=True)
        else:
            final = self._new_image_path(request.prompt, seed, outputs_dir)
        temp = temp_path_for(final)

        def commit() -> Path:
            with self._transaction():
                entry.image_path = str(final)
                self._insert(entry)
                if output is not None:
                    os.replace(temp, final)
                    return final
                claimed = claim_name(temp, final)
                self._db.execute("UPDATE generations SET image_path = ? WHERE id = ?", (str(claimed), entry.id))
                entry.image_path = str(claimed)
                return claimed

        try:
            write_png(temp, image, request, seed, index, info)  # a full disk fails here, leaving no row
            return self._retrying_after_corruption(commit)
        finally:
            if temp.exists():
                temp.unlink()

    def _new_image_path(self, prompt: str, seed: int, outputs_dir: Path | None = None) -> Path:
        folder = Path(outputs_dir or self.outputs_dir) / time.strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{time.strftime('%H%M%S')}-{seed}-{prompt_slug(prompt)}.png"

    def delete(self, entry_id: int) -> bool:
        """Remove a row and its image file. The file goes first: a crash in between leaves
        a row marked missing, never a deleted entry whose image comes back."""
        entry = self.get(entry_id)
        if entry is None:
            return False
        if entry.image_path:
            try:
                Path(entry.image_path).unlink()
            except FileNotFoundError:
                pass
        with self._transaction():
            self._db.execute("DELETE FROM generations WHERE id = ?", (entry_id,))
        return True

    # --- reading ------------------------------------------------------------------------

    def get(self, entry_id: int) -> HistoryEntry | None:
        rows = self._query("SELECT * FROM generations WHERE id = ?", (entry_id,))
        return _entry(rows[0]) if rows else None

    def recent(self, limit: int = 50, offset: int = 0) -> list[HistoryEntry]:
        return self.query(limit=limit, offset=offset)

    def search(self, text: str, limit: int = 200) -> list[HistoryEntry]:
        """Entries whose prompt or negative prompt contains ``text`` (case-insensitive for ASCII), newest first."""
        return self.query(text=text, limit=limit)

    def query(self, text: str = "", status: str | None = None, model: str | None = None, limit: int = 50,
              offset: int = 0) -> list[HistoryEntry]:
        """Newest first, filtered by prompt text, status and model; ``limit``/``offset`` page through."""
        where, params = self._filters(text, status, model)
        rows = self._query(f"SELECT * FROM generations {where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                           (*params, limit, offset))
        return [_entry(r) for r in rows]

    def neighbour(self, here: HistoryEntry, older: bool) -> HistoryEntry | None:
        """The finished entry just older (or newer) than ``here`` in the newest-first order the
        history list shows, for stepping through images one at a time (``here`` may be deleted)."""
        sign, order = ("<", "DESC") if older else (">", "ASC")
        rows = self._query(
            f"SELECT * FROM generations WHERE status = 'done' AND (created_at {sign} ? OR "
            f"(created_at = ? AND id {sign} ?)) ORDER BY created_at {order}, id {order} LIMIT 1",
            (here.created_at, here.created_at, here.id))
        return _entry(rows[0]) if rows else None

    def parent(self, entry: HistoryEntry) -> HistoryEntry | None:
        """The entry whose image ``entry`` was made from (an edit, a variation, a hires fix of it),
        found by its image's path; None for an image made from text or from a file not in the history."""
        source = str(entry.extras().get("source", ""))
        if not source:
            return None
        rows = self._query("SELECT * FROM generations WHERE image_path = ? ORDER BY id DESC LIMIT 1", (source,))
        return _entry(rows[0]) if rows and rows[0]["id"] != entry.id else None

    def lineage(self, entry: HistoryEntry, limit: int = 20) -> list[HistoryEntry]:
        """``entry``'s parent, its parent's, and so on (nearest first; at most ``limit``, and no loops)."""
        chain: list[HistoryEntry] = []
        seen = {entry.id}
        here = self.parent(entry)
        while here is not None and here.id not in seen and len(chain) < limit:
            chain.append(here)
            seen.add(here.id)
            here = self.parent(here)
        return chain

    def latest_done(self) -> HistoryEntry | None:
        entries = self.query(status="done", limit=1)
        return entries[0] if entries else None

    def count_matching(self, text: str = "", status: str | None = None, model: str | None = None) -> int:
        where, params = self._filters(text, status, model)
        return self._query(f"SELECT COUNT(*) FROM generations {where}", params)[0][0]

    @staticmethod
    def _filters(text: str, status: str | None, model: str | None) -> tuple[str, tuple]:
        clauses, params = [], []
        if text:
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append("(prompt LIKE ? ESCAPE '\\' OR negative_prompt LIKE ? ESCAPE '\\')")
            params += [pattern, pattern]
        if status:
            clauses.append("status = ?")
            params.append(status)
        if model:
            clauses.append("model = ?")
            params.append(model)
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)

    def models(self) -> list[str]:
        return [r[0] for r in self._query("SELECT DISTINCT model FROM generations WHERE model != '' ORDER BY model")]

    def recent_prompts(self, limit: int = 200) -> list[str]:
        rows = self._query(
            "SELECT prompt FROM generations GROUP BY prompt ORDER BY MAX(created_at) DESC LIMIT ?", (limit,))
        return [r[0] for r in rows]

    def count(self) -> int:
        return self._query("SELECT COUNT(*) FROM generations")[0][0]

    def integrity_ok(self) -> bool:
        return self._query("PRAGMA integrity_check")[0][0] == "ok"

    # --- reconcile ----------------------------------------------------------------------

    def reconcile(self, outputs_dir: Path | None = None) -> ReconcileReport:
        """Bring rows and files back into agreement after a crash or a manual change; the files
        looked through are those of ``outputs_dir`` (a client's setting), else the outputs folder."""
        self.verify()
        report = ReconcileReport(moved_aside=self.moved_aside)
        known: set[str] = set()
        rows = self._query("SELECT id, image_path, missing FROM generations WHERE image_path IS NOT NULL")
        gone, back = [], []
        for entry_id, path, missing in rows:
            known.add(path)
            exists = os.path.exists(path)
            if not exists and not missing:
                gone.append(entry_id)
            elif exists and missing:
                back.append(entry_id)
        with self._transaction():
            self._db.executemany("UPDATE generations SET missing = 1 WHERE id = ?", [(i,) for i in gone])
            self._db.executemany("UPDATE generations SET missing = 0 WHERE id = ?", [(i,) for i in back])
        report.marked_missing, report.found_again = len(gone), len(back)
        for path in _walk_files(Path(outputs_dir or self.outputs_dir)):
            if path.name.endswith(TEMP_SUFFIX):
                path.unlink(missing_ok=True)
                report.temp_removed += 1
            elif path.suffix.lower() == ".png" and str(path) not in known:
                if self._adopt(path):
                    report.adopted += 1
                else:
                    report.unreadable += 1
        if report.changed:
            log.warning(report.message())
        return report

    def _adopt(self, path: Path) -> bool:
        try:
            data = json.loads(png_text(path)[SDTUI_KEY])
            request = GenerationRequest(**data["request"])
            info = data.get("info", {})
            entry = HistoryEntry.for_request(request, "done", image_index=int(data.get("index", 0)),
                                             image_path=str(path), **info_fields(info))
            entry.seed = int(data["seed"])
            entry.created_at = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(
                timespec="milliseconds")
        except (OSError, KeyError, ValueError, TypeError):
            return False
        self.add(entry)
        return True


def temp_path_for(final: Path) -> Path:
    """A temporary name beside ``final``, unique to this process and call (two sdtui processes
    saving the same name at once must not write into one file); reconcile removes leftovers."""
    import secrets

    return final.with_name(f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")


def claim_name(temp: Path, final: Path) -> Path:
    """Give ``temp`` the name ``final`` (or ``final-2``, ...) without ever replacing an existing file."""
    stem, n = final.stem, 1
    while True:
        try:
            os.link(temp, final)  # fails if the name is taken, even by another process
            temp.unlink()
            return final
        except FileExistsError:
            n += 1
            final = final.with_name(f"{stem}-{n}.png")


def _is_corruption(error: sqlite3.DatabaseError) -> bool:
    """SQLITE_CORRUPT or SQLITE_NOTADB, as opposed to a locked or busy database."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (11, 26)
    return "malformed" in str(error) or "not a database" in str(error)


def _walk_files(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for folder, _dirs, files in os.walk(root):
        for name in files:
            yield Path(folder) / name


# Columns added after schema 1, with their definitions, for databases made before them.
_ADDED_COLUMNS = {"torch_version": "TEXT NOT NULL DEFAULT ''", "os_version": "TEXT NOT NULL DEFAULT ''",
                  "chip": "TEXT NOT NULL DEFAULT ''", "extra": "TEXT NOT NULL DEFAULT ''"}


def _add_missing_columns(db: sqlite3.Connection) -> None:
    present = {row[1] for row in db.execute("PRAGMA table_info(generations)")}
    for name, definition in _ADDED_COLUMNS.items():
        if name not in present:
            db.execute(f"ALTER TABLE generations ADD COLUMN {name} {definition}")


def _seed_to_sqlite(seed: int | None) -> int | None:
    """SQLite integers are signed 64-bit; seeds from 2**63 up are stored as their two's complement."""
    return seed - 2**64 if seed is not None and seed >= 2**63 else seed


def _entry(row: sqlite3.Row) -> HistoryEntry:
    values = {key: row[key] for key in row.keys()}
    if isinstance(values.get("seed"), int) and values["seed"] < 0:
        values["seed"] += 2**64
    return HistoryEntry(**values)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (the connection is in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock):
        self._db = db
        self._lock = lock

    def __enter__(self):
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, exc_type, exc, tb):
        try:
            self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self._lock.release()
        return False
