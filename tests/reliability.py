"""What the reliability tests share: the history as rows, a check that nothing made
before a fault was lost, and the bad model paths every way in is tried with."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

from tui.store.history import TEMP_SUFFIX, History


def history_rows(home: Path) -> list[tuple]:
    with sqlite3.connect(home / "history.db") as db:
        return db.execute("SELECT id, prompt, seed, status, image_path FROM generations ORDER BY id").fetchall()


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assert_nothing_lost(home: Path, before) -> None:
    rows, files = before
    now = history_rows(home)
    assert now[:len(rows)] == rows, "a history row changed"
    assert {path: digest(path) for path in files} == files, "a finished image changed"


def assert_history_consistent(home: Path) -> dict:
    """SQLite's integrity check passes, and after reconcile every row's file exists, every
    image has a row and no unfinished file is left. Returns the counts."""
    store = History(home / "history.db", home / "outputs")
    try:
        assert store.integrity_ok()
        report = store.reconcile()
        assert report.marked_missing == 0, "a committed row lost its file"
        rows = store.recent(1_000_000)
        done = [r for r in rows if r.status == "done"]
        assert all(Path(r.image_path).exists() for r in done)
        on_disk = {str(p) for p in (home / "outputs").rglob("*") if p.is_file()}
        assert not [p for p in on_disk if p.endswith(TEMP_SUFFIX)], "an unfinished file was left"
        assert on_disk == {r.image_path for r in done}, "an image without a row, or a row without its image"
        return {"rows": len(rows), "done": len(done), "adopted": report.adopted, "partials": report.temp_removed}
    finally:
        store.close()


def _truncated_safetensors(tmp_path: Path, tiny_pipeline_dir: Path) -> Path:
    from tests.tiny_models import save_single_file
    from tui.engine.demo import build_demo_pipeline

    whole = save_single_file(build_demo_pipeline(), tmp_path / "whole.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return cut


def _pickle_folder(tmp_path: Path, tiny_pipeline_dir: Path) -> Path:
    from tui.engine.demo import build_demo_pipeline

    folder = tmp_path / "pickled"
    build_demo_pipeline().save_pretrained(folder, safe_serialization=False)
    return folder


def _folder_without_index(tmp_path: Path, tiny_pipeline_dir: Path) -> Path:
    folder = tmp_path / "no-index"
    shutil.copytree(tiny_pipeline_dir, folder)
    (folder / "model_index.json").unlink()
    return folder


def _file(name: str, content: bytes):
    def make(tmp_path: Path, tiny_pipeline_dir: Path) -> Path:
        path = tmp_path / name
        path.write_bytes(content)
        return path
    return make


MODEL_PATHS = [
    ("missing folder", lambda tmp, _: tmp / "no-such-model", "neither an existing folder nor a Hub id"),
    ("a file where a folder is needed", _file("notes.txt", b"hello"), "not a model"),
    ("model_index.json given as the model", lambda _t, tiny: tiny / "model_index.json", "model"),
    ("folder without model_index.json", _folder_without_index, "no model_index.json"),
    ("empty folder", lambda tmp, _: (tmp / "empty").mkdir() or tmp / "empty", "no model_index.json"),
    ("truncated .safetensors", _truncated_safetensors, "truncated"),
    ("empty .safetensors", _file("empty.safetensors", b""), "too short to be a .safetensors file"),
    ("pickle checkpoint", _file("model.ckpt", b"\x80\x04pickle"), "--allow-pickle"),
    ("pickle weights in a folder", _pickle_folder, "--allow-pickle"),
]


def start_generating(prompt: str, steps: int, size: int, env: dict | None = None):
    """``sdtui generate --demo`` running, returned once its progress shows the first step, with
    what it has written to stderr so far."""
    import subprocess

    from tests.conftest import sdtui_command

    process = subprocess.Popen(sdtui_command() + ["generate", prompt, "--demo", "--steps", str(steps), "--width",
                                                  str(size), "--height", str(size)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen = ""
    while f"/{steps}" not in seen:
        char = process.stderr.read(1)
        assert char, seen
        seen += char
    return process, seen
