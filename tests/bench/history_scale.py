"""The history screen at scale: open time and search time with 10,000 entries.

Run: python -m tests.bench.history_scale [--entries N] [--repeats N] [--smoke]
Builds a history of N rows (pointing at 50 real PNG files, as a long-used outputs
folder would), then runs the installed ``sdtui --demo`` in tmux and times, as a user
sees it: F2 until the list is on screen, and a search typed into the box until the
filtered list is on screen. Also times the raw queries. ``--smoke``: 300 entries, once.
Writes bench-results/history_scale.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from tests.bench import save_result, stop_server_of


def build_history(home: Path, entries: int) -> None:
    from PIL import Image

    from tui.engine.request import GenerationRequest
    from tui.locations import locations
    from tui.store.history import History, HistoryEntry

    places = locations()
    history = History(places.history_db, places.outputs_dir)
    places.outputs_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(50):
        path = places.outputs_dir / f"image-{i}.png"
        Image.effect_noise((512, 512), 40 + i).convert("RGB").save(path)
        files.append(str(path))
    words = ["fox", "whale", "castle", "forest", "portrait", "city", "storm", "garden", "robot", "river"]
    rows = []
    for i in range(entries):
        request = GenerationRequest(f"a {words[i % 10]} number {i}, highly detailed", seed=i, steps=20 + i % 10)
        entry = HistoryEntry.for_request(request, "done", model="demo model (random weights)", total_s=2.0,
                                         image_path=files[i % 50],
                                         created_at=f"2026-{1 + i // 100000:02d}-01T00:00:00.{i:06d}+00:00")
        rows.append(entry)
    with history._transaction():
        for entry in rows:
            history._insert(entry)
    history.close()


def _tmux(*args: str) -> str:
    import subprocess

    # os.environ, without the COLUMNS and LINES that readline may have exported at C level.
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=30, env=dict(os.environ)).stdout


def _until(session: str, predicate, timeout: float = 60.0) -> float:
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        if predicate(_tmux("capture-pane", "-t", session, "-p")):
            return time.perf_counter() - began
        time.sleep(0.005)
    raise AssertionError("the screen never showed what was expected:\n" + _tmux("capture-pane", "-t", session, "-p"))


SEARCH = "whale number 9"


def drive(home: Path, entries: int, matching: int, repeats: int) -> dict:
    """The installed sdtui in tmux (a real terminal): key press to screen, as a user sees it."""
    import shutil
    import sys

    sdtui = shutil.which("sdtui", path=str(Path(sys.executable).parent))
    opens, searches = [], []
    for attempt in range(repeats):
        session = f"sdtui-bench-{os.getpid()}-{attempt}"
        _tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "50",
              f"env -u COLUMNS -u LINES TERM=xterm-256color SDTUI_HOME={home} "
              f"XDG_RUNTIME_DIR={os.environ.get('XDG_RUNTIME_DIR', '')} {sdtui} --demo")
        try:
            _until(session, lambda s: "demo model (random weights) · cpu" in s)
            _tmux("send-keys", "-t", session, "F2")
            opens.append(_until(session, lambda s: f"{entries} entries" in s))
            before = _settled_line(session, 1)  # the list takes focus a moment after the screen opens
            _tmux("send-keys", "-t", session, "/")
            # Wait until the search box shows its cursor (it has focus) before typing.
            began = time.perf_counter()
            while _tmux("capture-pane", "-e", "-t", session, "-p").splitlines()[1] == before:
                if time.perf_counter() - began > 10:
                    raise AssertionError("the search box never took focus")
                time.sleep(0.005)
            _tmux("send-keys", "-t", session, "-l", SEARCH)
            label = f"{matching} entr{'y' if matching == 1 else 'ies'}"
            searches.append(_until(session, lambda s: label in s))
        finally:
            _tmux("kill-session", "-t", session)
    return {"open_s": opens, "search_s": searches}


def _settled_line(session: str, index: int, quiet_s: float = 0.6, limit_s: float = 10.0) -> str:
    """Line ``index`` of the screen once it has not changed for ``quiet_s``."""
    began = time.perf_counter()
    line = _tmux("capture-pane", "-e", "-t", session, "-p").splitlines()[index]
    still_since = time.perf_counter()
    while time.perf_counter() - still_since < quiet_s:
        if time.perf_counter() - began > limit_s:
            raise AssertionError("the screen never settled")
        time.sleep(0.05)
        now = _tmux("capture-pane", "-e", "-t", session, "-p").splitlines()[index]
        if now != line:
            line, still_since = now, time.perf_counter()
    return line


def run(entries: int, repeats: int) -> dict:
    home = Path(tempfile.mkdtemp(prefix="sdtui-bench-"))
    os.environ["SDTUI_HOME"] = str(home)
    began = time.perf_counter()
    build_history(home, entries)
    built = time.perf_counter() - began

    from tui.locations import locations
    from tui.store.history import History

    places = locations()
    history = History(places.history_db, places.outputs_dir)
    query_times, search_times = [], []
    for _ in range(5):
        t = time.perf_counter()
        history.query(limit=200)
        history.count_matching()
        query_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        history.query(SEARCH, limit=200)
        matching = history.count_matching(SEARCH)
        search_times.append(time.perf_counter() - t)
    history.close()
    try:
        results = drive(home, entries, matching, repeats)
    finally:
        stop_server_of(dict(os.environ))
    summary = {
        "entries": entries,
        "build_s": round(built, 2),
        "first_page_query_ms": round(statistics.median(query_times) * 1000, 1),
        "search_query_ms": round(statistics.median(search_times) * 1000, 1),
        "screen_open_ms": round(statistics.median(results["open_s"]) * 1000, 1),
        "screen_search_ms": round(statistics.median(results["search_s"]) * 1000, 1),
        "runs": results,
    }
    print(f"history at {entries} entries ({os.cpu_count()} CPUs)")
    print(f"  first page query (200 rows + count)  {summary['first_page_query_ms']:8.1f} ms")
    print(f"  search query                          {summary['search_query_ms']:8.1f} ms")
    print(f"  F2 to the list on screen (tmux)       {summary['screen_open_ms']:8.1f} ms")
    print(f"  search typed to filtered list (tmux)  {summary['screen_search_ms']:8.1f} ms "
          "(from sending 14 keys at once; includes the 150 ms debounce)")
    save_result("history_scale.json", summary)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="300 entries, once")
    args = parser.parse_args()
    run(300, 1) if args.smoke else run(args.entries, args.repeats)


if __name__ == "__main__":
    main()
