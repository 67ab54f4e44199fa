"""The SQLite history and its images: saving, queries, delete, reconcile, crash safety."""

import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.reliability import assert_history_consistent
from tui.engine.request import GenerationRequest
from tui.store.history import History, HistoryEntry
from tui.store.images import png_text
from tui.store.importers import read_request


@pytest.fixture
def history(tmp_path):
    store = History(tmp_path / "history.db", tmp_path / "outputs")
    yield store
    store.close()


def save(history, prompt="a red fox", seed=7, **kwargs):
    request = GenerationRequest(prompt, seed=seed, **kwargs)
    entry = HistoryEntry.for_request(request, "done", model="demo", total_s=1.5, it_per_s=8.0, peak_memory=123)
    path = history.save_image(Image.new("RGB", (16, 16), "blue"), request, seed, 0, entry, {"model": "demo"})
    return entry, path


def test_save_writes_the_png_and_its_row(history, tmp_path):
    entry, path = save(history)
    assert path.exists() and path.is_relative_to(tmp_path / "outputs")
    assert path.name.endswith("-7-a-red-fox.png")
    row = history.get(entry.id)
    assert row.image_path == str(path) and row.status == "done" and row.model == "demo"
    assert (row.prompt, row.seed, row.steps, row.scheduler, row.total_s) == ("a red fox", 7, 20, "DPM++ 2M Karras", 1.5)
    assert row.created_at.endswith("+00:00")
    assert not list(path.parent.glob(".*partial"))


def test_an_edit_records_its_parent_and_the_chain_of_edits_reads_back(history):
    original, original_path = save(history, "a harbour at dusk", shift=3.0)
    edited, edited_path = save(history, "make the sky stormy", init_image=str(original_path), edit=True)
    again, _ = save(history, "add a lighthouse", init_image=str(edited_path), edit=True)
    variation, _ = save(history, "a harbour", init_image=str(original_path), strength=0.4)
    row = history.get(again.id)
    assert row.extras()["edit"] is True and "strength" not in row.extras()
    assert row.request().edit and row.request().init_image == str(edited_path)
    assert history.get(original.id).request().shift == 3.0
    assert [e.id for e in history.lineage(row)] == [edited.id, original.id]
    assert history.parent(history.get(variation.id)).id == original.id
    assert history.parent(history.get(original.id)) is None and history.lineage(history.get(original.id)) == []


def test_same_name_never_overwrites(history):
    _, first = save(history)
    _, second = save(history)
    assert first != second and first.exists() and second.exists()


def test_wal_mode_and_schema_version(history, tmp_path):
    db = sqlite3.connect(tmp_path / "history.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3


def test_recent_search_get_and_delete(history):
    ids = []
    for i, prompt in enumerate(["a red fox", "a blue whale", "50% off_sale", "a red car"]):
        ids.append(save(history, prompt, seed=i)[0].id)
    history.add(HistoryEntry.for_request(GenerationRequest("cancelled fox", seed=1), "cancelled", error="cancelled"))
    assert [e.prompt for e in history.recent(3)] == ["cancelled fox", "a red car", "50% off_sale"]
    assert [e.prompt for e in history.recent(2, offset=3)] == ["a blue whale", "a red fox"]
    assert {e.prompt for e in history.search("RED")} == {"a red fox", "a red car"}
    assert [e.prompt for e in history.search("50%")] == ["50% off_sale"]
    assert history.search("_") and history.search("%_") == []
    assert history.recent_prompts()[:2] == ["cancelled fox", "a red car"]
    entry = history.get(ids[0])
    assert history.delete(ids[0]) and history.get(ids[0]) is None
    assert not Path(entry.image_path).exists()
    assert not history.delete(ids[0])
    assert history.count() == 4


def test_a_schema_1_history_gains_the_machine_columns_and_keeps_its_rows(tmp_path):
    db = sqlite3.connect(tmp_path / "history.db")
    columns = ("prompt TEXT NOT NULL, negative_prompt TEXT NOT NULL DEFAULT '', steps INTEGER NOT NULL, "
               "guidance REAL NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL, seed INTEGER, "
               "scheduler TEXT NOT NULL, count INTEGER NOT NULL DEFAULT 1, image_index INTEGER NOT NULL DEFAULT 0, "
               "model TEXT NOT NULL DEFAULT '', device TEXT NOT NULL DEFAULT '', dtype TEXT NOT NULL DEFAULT '', "
               "status TEXT NOT NULL, error TEXT, load_s REAL, first_step_s REAL, total_s REAL, it_per_s REAL, "
               "peak_memory INTEGER, image_path TEXT, missing INTEGER NOT NULL DEFAULT 0")
    db.execute(f"CREATE TABLE generations (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL, {columns})")
    db.execute("INSERT INTO generations (created_at, prompt, steps, guidance, width, height, seed, scheduler, status)"
               " VALUES ('2026-01-01T00:00:00+00:00', 'old fox', 20, 7, 512, 512, 9, 'Euler', 'cancelled')")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    store = History(tmp_path / "history.db", tmp_path / "outputs")
    (old,) = store.recent(5)
    assert (old.prompt, old.seed, old.torch_version, old.chip, old.extra) == ("old fox", 9, "", "", "")
    entry, _ = save(store, "new fox")
    store._db.execute("UPDATE generations SET chip = 'Apple M2 Pro' WHERE id = ?", (entry.id,))
    assert store.get(entry.id).chip == "Apple M2 Pro"
    store.close()
    assert sqlite3.connect(tmp_path / "history.db").execute("PRAGMA user_version").fetchone()[0] == 3


def test_request_of_an_entry_remakes_that_image(history):
    entry, _ = save(history, "x", seed=41, steps=9, width=256)
    assert history.get(entry.id).request() == GenerationRequest("x", seed=41, steps=9, width=256)


@pytest.mark.parametrize("seed", [2**63 - 1, 2**63, 2**64 - 1])
def test_64_bit_seeds_survive_the_row_the_png_and_adoption(history, tmp_path, seed):
    entry, path = save(history, "a comfy fox", seed=seed)
    assert history.get(entry.id).seed == seed  # SQLite's INTEGER is signed: stored as two's complement
    assert read_request(path).seed == seed and f"Seed: {seed}," in png_text(path)["parameters"]
    db = sqlite3.connect(tmp_path / "history.db")
    db.execute("DELETE FROM generations")
    db.commit()
    db.close()
    history.reconcile()
    assert [e.seed for e in history.recent(5)] == [seed]


def test_reconcile_marks_missing_files_adopts_orphans_and_removes_partials(history, tmp_path):
    kept, kept_path = save(history, "kept")
    gone, gone_path = save(history, "gone", seed=2)
    orphan, orphan_path = save(history, "orphan", seed=3)
    gone_path.unlink()
    with history._transaction() as db:  # an image whose row never committed
        db.execute("DELETE FROM generations WHERE id = ?", (orphan.id,))
    partial = orphan_path.with_name(".half-written.png.partial")
    partial.write_bytes(b"\x89PNG")
    stranger = orphan_path.with_name("from-elsewhere.png")
    Image.new("RGB", (4, 4)).save(stranger)

    report = history.reconcile()
    assert (report.marked_missing, report.adopted, report.temp_removed, report.unreadable) == (1, 1, 1, 1)
    assert "marked missing" in report.message() and "added back" in report.message()
    assert history.get(gone.id).missing == 1 and history.get(kept.id).missing == 0
    adopted = history.search("orphan")[0]
    assert adopted.image_path == str(orphan_path) and adopted.seed == 3 and adopted.status == "done"
    assert not partial.exists() and stranger.exists()

    Image.new("RGB", (4, 4)).save(gone_path)  # the file comes back
    second = history.reconcile()
    assert second.found_again == 1 and history.get(gone.id).missing == 0
    assert not history.reconcile().changed


def test_a_corrupt_database_is_moved_aside_and_a_new_one_started(tmp_path):
    db_path = tmp_path / "history.db"
    db_path.write_bytes(b"this is not a database" * 200)
    store = History(db_path, tmp_path / "outputs")
    try:
        assert store.moved_aside and Path(store.moved_aside).exists()
        report = store.reconcile()
        assert "moved to" in report.message()
        save(store)
        assert store.count() == 1 and store.integrity_ok()
    finally:
        store.close()


def damaged_copy(tmp_path: Path, kind: str) -> tuple[Path, bytes]:
    """A history of 300 rows, damaged the way a disk or an interrupted copy damages files."""
    source = History(tmp_path / "whole.db", tmp_path / "outputs")
    for i in range(300):
        source.add(HistoryEntry.for_request(GenerationRequest(f"prompt {i} " * 20, seed=i), "failed", error="x"))
    source.close()
    data = bytearray((tmp_path / "whole.db").read_bytes())
    if kind == "garbage":
        data = bytearray(b"this is not a database" * 200)
    elif kind == "truncated":
        data = data[: len(data) // 2]
    else:  # one page in the middle overwritten: the header is fine, so opening succeeds
        data[5 * 4096: 6 * 4096] = random.Random(1).randbytes(4096)
    damaged = tmp_path / "history.db"
    damaged.write_bytes(bytes(data))
    return damaged, bytes(data)


@pytest.mark.parametrize("kind", ["garbage", "truncated", "page overwritten"])
def test_a_damaged_database_is_moved_aside_intact_and_a_new_one_started(tmp_path, kind):
    db_path, original = damaged_copy(tmp_path, kind)
    store = History(db_path, tmp_path / "outputs")
    try:
        store.recent_prompts()  # the app's first read: must not raise, whatever the damage
        report = store.reconcile()
        assert "moved to" in report.message()
        assert Path(store.moved_aside).read_bytes() == original, "the damaged copy is kept as it was"
        save(store)
        assert store.count() == 1 and store.integrity_ok()
    finally:
        store.close()


def test_an_image_saved_into_a_damaged_database_keeps_its_row_after_the_move(tmp_path):
    db_path, _ = damaged_copy(tmp_path, "page overwritten")
    store = History(db_path, tmp_path / "outputs")
    try:
        assert store.moved_aside is None  # the header is fine, so the damage is not seen yet
        _, path = save(store, prompt="written after the damage")
        store.reconcile()  # finds the damage; the image is adopted from its own metadata
        assert store.moved_aside
        assert [(e.prompt, e.image_path) for e in store.recent()] == [("written after the damage", str(path))]
    finally:
        store.close()


def test_two_damaged_databases_in_one_second_are_both_kept(tmp_path):
    kept = set()
    for _ in range(2):
        db_path, original = damaged_copy(tmp_path, "garbage")
        store = History(db_path, tmp_path / "outputs")
        kept.add(store.moved_aside)
        store.close()
    assert len(kept) == 2 and all(Path(p).exists() for p in kept)


def test_exact_output_path_replaces_and_records(history, tmp_path):
    request = GenerationRequest("x", seed=1)
    target = tmp_path / "elsewhere" / "fox.png"
    for _ in range(2):
        entry = HistoryEntry.for_request(request, "done")
        path = history.save_image(Image.new("RGB", (8, 8)), request, 1, 0, entry, output=target)
    assert path == target and target.exists() and history.count() == 2


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from PIL import Image
    from tui.engine.request import GenerationRequest
    from tui.store.history import History, HistoryEntry
    root = Path(sys.argv[1])
    store = History(root / "history.db", root / "outputs")
    image = Image.effect_noise((256, 256), 64).convert("RGB")
    print("ready", flush=True)
    for i in range(100000):
        request = GenerationRequest(f"prompt {i}", seed=i)
        store.save_image(image, request, i, 0, HistoryEntry.for_request(request, "done"))
""")


@pytest.mark.slow
def test_sigkill_during_saves_leaves_a_consistent_history(tmp_path):
    rng = random.Random(1)
    for _ in range(6):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert assert_history_consistent(tmp_path)["done"] > 6
