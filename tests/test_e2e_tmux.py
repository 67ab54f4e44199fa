"""End to end: the installed ``sdtui --demo`` in a real terminal (tmux), typed at like a person would."""

import os
import re
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from tests.conftest import sdtui_command

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")


# Readline, loaded by the test runner, exports COLUMNS=80 and LINES=24 into the process's C
# environment (not os.environ); a tmux server started with them hands them to the app, which
# then draws 80x24 whatever the pane's size. So tmux gets os.environ, and the app runs without them.
NO_SIZE_OVERRIDE = "env -u COLUMNS -u LINES"


def tmux(*args, check=True):
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=check, env=dict(os.environ))


def capture(session, escapes=False):
    args = ["capture-pane", "-t", session, "-p"] + (["-e"] if escapes else [])
    return tmux(*args).stdout


def wait_screen(session, predicate, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = capture(session)
        if predicate(screen):
            return screen
        time.sleep(0.2)
    raise AssertionError(f"screen never matched; last screen:\n{capture(session)}")


def picture_size(screen: str) -> tuple[int, int]:
    """Columns and rows of the largest block picture on the screen: its widest run of half-block
    cells, and how many rows hold a run that wide (the recent strip's thumbnails are far narrower)."""
    runs = [max((len(r) for r in re.findall("▄+", line)), default=0) for line in screen.splitlines()]
    widest = max(runs)
    return widest, sum(run >= widest for run in runs)


# The picture first: at least this many columns and rows for a square image at each size.
PICTURE_TARGETS = {(80, 24): (30, 15), (100, 30): (40, 20), (200, 60): (100, 50)}


@pytest.mark.parametrize("width,height", [(100, 30), (80, 24), (200, 60)])
def test_demo_generation_in_a_real_terminal(tmp_path, width, height):
    session = f"sdtui-{uuid.uuid4().hex[:8]}"
    home = tmp_path / "home"
    command = " ".join(sdtui_command() + ["--demo"])
    env = f"TERM=xterm-256color COLORTERM=truecolor SDTUI_HOME={home}"
    tmux("new-session", "-d", "-s", session, "-x", str(width), "-y", str(height),
         f"{NO_SIZE_OVERRIDE} {env} {command}")
    try:
        wait_screen(session, lambda s: "demo model (random weights) · cpu" in s)
        tmux("send-keys", "-t", session, "-l", "a red fox")
        tmux("send-keys", "-t", session, "Enter")
        screen = wait_screen(session, lambda s: "20/20" in s and "done" in s)
        assert "a red fox" in screen
        coloured = capture(session, escapes=True)
        half_blocks = [line for line in coloured.splitlines() if line.count("▄") >= 4]
        assert len(half_blocks) >= 3, coloured
        assert all(re.search(r"\x1b\[[0-9;]*(38;[25]|48;[25])", line) for line in half_blocks)
        columns, rows = picture_size(screen)
        wanted = PICTURE_TARGETS[(width, height)]
        assert columns >= wanted[0] and rows >= wanted[1], \
            f"picture {columns}x{rows} cells at {width}x{height}:\n{screen}"
        assert ("Steps" in screen) == (width >= 120), "the settings panel starts hidden below 120 columns"
        footer = next(line for line in screen.splitlines() if "palette" in line)
        assert all(key in footer for key in ("f1 Help", "f2 History", "f3 Models", "^q Quit")), footer
        images = list((home / "outputs").rglob("*.png"))
        assert len(images) == 1
        tmux("send-keys", "-t", session, "C-q")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and tmux("has-session", "-t", session, check=False).returncode == 0:
            time.sleep(0.2)
        assert tmux("has-session", "-t", session, check=False).returncode != 0, "sdtui did not exit on Ctrl+Q"
    finally:
        tmux("kill-session", "-t", session, check=False)


def test_sighup_exits_cleanly_and_keeps_history(tmp_path):
    session = f"sdtui-{uuid.uuid4().hex[:8]}"
    home = tmp_path / "home"
    command = " ".join(sdtui_command() + ["--demo"])
    tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30",
         f"{NO_SIZE_OVERRIDE} TERM=xterm-256color SDTUI_HOME={home} {command}; echo exited $?; sleep 30")
    try:
        wait_screen(session, lambda s: "demo model (random weights) · cpu" in s)
        tmux("send-keys", "-t", session, "-l", "first")
        tmux("send-keys", "-t", session, "Enter")
        wait_screen(session, lambda s: "20/20" in s and "done" in s)
        pane_pid = tmux("display", "-p", "-t", session, "#{pane_pid}").stdout.strip()
        # The pane's shell runs `env ... sdtui`, and env execs sdtui: its only child is the app.
        app_pid = subprocess.run(["pgrep", "-P", pane_pid], capture_output=True, text=True).stdout.split()[0]
        os.kill(int(app_pid), signal.SIGHUP)
        screen = wait_screen(session, lambda s: "exited" in s, timeout=15)
        assert "Traceback" not in screen
        assert re.search(r"exited (0|129)", screen)
    finally:
        tmux("kill-session", "-t", session, check=False)
    import sqlite3

    rows = sqlite3.connect(home / "history.db").execute("SELECT status, image_path FROM generations").fetchall()
    assert len(rows) == 1 and rows[0][0] == "done" and os.path.exists(rows[0][1])
