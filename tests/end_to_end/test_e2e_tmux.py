"""End to end: the installed ``sdtui --demo`` in a real terminal (tmux), typed at like a person would."""

import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from contextlib import contextmanager, nullcontext

import pytest

from tests.conftest import demo_serving, sdtui_command
from tests.scripted_engine import serving

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
    # At 80x24 the app starts its own server process, as on a user's first run; at the other sizes,
    # which are about the layout, it finds the real server already running on a thread of the test.
    server = nullcontext() if (width, height) == (80, 24) else demo_serving(home)
    with server:
        _generate_in_a_real_terminal(session, home, command, env, width, height)


def _generate_in_a_real_terminal(session, home, command, env, width, height) -> None:
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


def app_pid(session: str) -> int:
    """The pane's shell runs `env ... sdtui`, and env execs sdtui: the app is the shell's only child,
    or the pane's process itself when the shell had nothing after it and exec'd it."""
    pane_pid = tmux("display", "-p", "-t", session, "#{pane_pid}").stdout.strip()
    children = subprocess.run(["pgrep", "-P", pane_pid], capture_output=True, text=True).stdout.split()
    return int(children[0] if children else pane_pid)


def test_a_hang_up_with_three_jobs_queued_loses_none_of_them(tmp_path):
    """The terminal goes away mid-job with two more waiting: the app exits, the server goes on,
    the three images arrive, and the next sdtui shows them. The server the app finds running is
    the real one with a scripted engine (500 steps of 10 ms a job): what is tested is the app."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("steps = 500\nwidth = 256\nheight = 256\n")
    with serving(home, step_s=0.01):
        _hang_up_with_three_jobs_queued(home)


def _hang_up_with_three_jobs_queued(home) -> None:
    import sqlite3

    session = f"sdtui-{uuid.uuid4().hex[:8]}"
    command = " ".join(sdtui_command() + ["--demo"])
    env = f"TERM=xterm-256color SDTUI_HOME={home} XDG_RUNTIME_DIR={os.environ['XDG_RUNTIME_DIR']}"
    tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30",
         f"{NO_SIZE_OVERRIDE} {env} {command}; echo exited $?; sleep 30")
    try:
        wait_screen(session, lambda s: "demo model (random weights) · cpu" in s)
        for prompt in ("first fox", "second fox", "third fox"):
            tmux("send-keys", "-t", session, "C-u")
            tmux("send-keys", "-t", session, "-l", prompt)
            wait_screen(session, lambda s: prompt in s, timeout=10)
            tmux("send-keys", "-t", session, "Enter")
            wait_screen(session, lambda s: f'queued: "{prompt}"' in s, timeout=10)
        wait_screen(session, lambda s: "queue 2" in s, timeout=5)  # one running, two waiting
        os.kill(app_pid(session), signal.SIGHUP)
        screen = wait_screen(session, lambda s: "exited" in s, timeout=15)
        assert "Traceback" not in screen and re.search(r"exited (0|129)", screen)
    finally:
        tmux("kill-session", "-t", session, check=False)

    def done() -> list[tuple]:
        with sqlite3.connect(home / "history.db") as db:
            return db.execute("SELECT prompt, image_path FROM generations WHERE status = 'done' "
                              "ORDER BY id").fetchall()

    deadline = time.monotonic() + 120
    while len(done()) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [prompt for prompt, _ in done()] == ["first fox", "second fox", "third fox"]
    assert all(os.path.exists(path) for _, path in done())

    session = f"sdtui-{uuid.uuid4().hex[:8]}"
    tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", f"{NO_SIZE_OVERRIDE} {env} {command}")
    try:
        wait_screen(session, lambda s: "demo model (random weights) · cpu" in s)
        tmux("send-keys", "-t", session, "F2")
        wait_screen(session, lambda s: all(p in s for p in ("first fox", "second fox", "third fox")))
        pid = app_pid(session)
    finally:
        tmux("kill-session", "-t", session, check=False)
    # tmux closing the pane is a hang-up on a terminal that is already gone: the app still ends.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}") and \
            "zombie" not in open(f"/proc/{pid}/status").read():
        time.sleep(0.2)
    assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read(), \
        "the app outlived its terminal"


@contextmanager
def started_with_images(tmp_path, width, height, prompts, term="TERM=xterm-256color COLORTERM=truecolor"):
    """Images made by ``sdtui generate`` first, then the app in a tmux pane of ``width`` x ``height``,
    both talking to the real server on a thread of the test; yields the tmux session and the home."""
    home = tmp_path / "home"
    session = f"sdtui-{uuid.uuid4().hex[:8]}"
    with demo_serving(home):
        try:
            _start_with_images(session, home, width, height, prompts, term)
            yield session, home
        finally:
            tmux("kill-session", "-t", session, check=False)


def _start_with_images(session, home, width, height, prompts, term) -> None:
    for prompt in prompts:
        done = subprocess.run(sdtui_command() + ["generate", prompt, "--demo", "--steps", "2", "--width", "128",
                                                 "--height", "128"], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "SDTUI_HOME": str(home)})
        assert done.returncode == 0, done.stderr
    command = " ".join(sdtui_command() + ["--demo"])
    tmux("new-session", "-d", "-s", session, "-x", str(width), "-y", str(height),
         f"{NO_SIZE_OVERRIDE} -u COLORTERM {term} SDTUI_HOME={home} {command}")
    wait_screen(session, lambda s: "demo model (random weights) · cpu" in s)


@pytest.mark.parametrize("width,height", [(100, 30), (80, 24), (200, 60)])
def test_the_viewer_in_a_real_terminal(tmp_path, width, height):
    with started_with_images(tmp_path, width, height, ["older fox", "newer owl"]) as (session, _):
        tmux("send-keys", "-t", session, "C-o")
        screen = wait_screen(session, lambda s: "zoom fit" in s)
        assert "newer owl" in screen and "seed" in screen and "128x128" in screen
        columns, rows = picture_size(screen)
        assert rows >= height - 3 and columns >= rows * 2 - 1, f"{columns}x{rows}:\n{screen}"
        footer = screen.splitlines()[-1]
        assert "Close" in footer and "Zoom in" in footer and "Cancel" not in footer, footer
        tmux("send-keys", "-t", session, "+")
        wait_screen(session, lambda s: "zoom fit" not in s and "zoom " in s)
        tmux("send-keys", "-t", session, "+")
        wait_screen(session, lambda s: "zoom 100%" in s)
        time.sleep(0.3)
        zoomed = capture(session, escapes=True)
        tmux("send-keys", "-t", session, "Down")
        deadline = time.monotonic() + 10
        while capture(session, escapes=True) == zoomed:  # the colours move with the view
            assert time.monotonic() < deadline, "the view did not move down"
            time.sleep(0.1)
        tmux("send-keys", "-t", session, "0")
        wait_screen(session, lambda s: "zoom fit" in s)
        tmux("send-keys", "-t", session, "n")
        wait_screen(session, lambda s: "older fox" in s and "newer owl" not in s)
        tmux("send-keys", "-t", session, "Escape")
        wait_screen(session, lambda s: "prompt (Enter to generate" in s)


SGR = re.compile(r"\x1b\[([0-9;]*)m")


def cell_colours(line: str) -> list[tuple]:
    """(background, foreground) of each half-block cell in a line captured with escapes."""
    fg = bg = None
    cells = []
    position = 0
    for match in SGR.finditer(line + "\x1b[m"):
        for ch in line[position:match.start()]:
            if ch == "▄":
                cells.append((bg, fg))
        position = match.end()
        params = [int(p) if p else 0 for p in match.group(1).split(";")]
        i = 0
        while i < len(params):
            p = params[i]
            if p in (38, 48) and params[i + 1] == 5:
                fg, bg = (params[i + 2], bg) if p == 38 else (fg, params[i + 2])
                i += 3
            elif p in (38, 48) and params[i + 1] == 2:
                rgb = tuple(params[i + 2:i + 5])
                fg, bg = (rgb, bg) if p == 38 else (fg, rgb)
                i += 5
            else:
                if p == 0:
                    fg = bg = None
                i += 1
    return cells


@pytest.mark.parametrize("colours", ["truecolor", "256"])
def test_picture_cells_are_the_colours_sdtui_chose(tmp_path, colours):
    """What the terminal holds, cell by cell, against the image: truecolour cells are the image's
    pixels (6 bits a channel), 256-colour cells the palette colours chosen by CIELAB and dithering."""
    import numpy as np
    from PIL import Image

    from tui.client.widgets.thumbnail import PALETTE_KEY, cell_keys, fit_size

    term = "TERM=xterm-256color COLORTERM=truecolor" if colours == "truecolor" else "TERM=xterm-256color"
    with started_with_images(tmp_path, 100, 30, ["colour check"], term) as (session, home):
        tmux("send-keys", "-t", session, "C-o")
        wait_screen(session, lambda s: "zoom fit" in s)
        time.sleep(0.3)
        grid = [cells for cells in map(cell_colours, capture(session, escapes=True).splitlines()) if len(cells) > 8]
        image = Image.open(next((home / "outputs").rglob("*.png"))).convert("RGB")
        picture = image.resize(fit_size(image.size, (100, 27)), Image.Resampling.LANCZOS)
        keys = cell_keys(picture, colours)
        assert len(grid) == keys.shape[0] and all(len(row) == keys.shape[1] for row in grid)
        if colours == "256":
            assert (keys & np.uint64(PALETTE_KEY)).all()
            expected = [[(int(k >> np.uint64(8)) & 0xFF, int(k) & 0xFF) for k in row] for row in keys]
        else:
            def rgb(value):
                return ((value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF)
            expected = [[(rgb(int(k) >> 24), rgb(int(k) & 0xFFFFFF)) for k in row] for row in keys]
        assert grid == expected
