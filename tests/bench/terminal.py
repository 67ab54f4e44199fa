"""The installed ``sdtui`` in a real pseudo-terminal, as an SSH session runs it: start-up
to first frame, key-press-to-screen latency while generating, and bytes written to the
terminal (what an SSH link carries) per generation and per second.

Run: python -m tests.bench.terminal [--repeats N] [--smoke]   (writes bench-results/terminal.json)
``--smoke`` runs each measure once, on small images.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

from tests.bench import BenchTimeout, save_result, stop_server_of, wait_until

# The prompt box's placeholder: the whole first screen is drawn. Without its first letter: while the
# box has focus the cursor sits on that letter, drawn in its own colours, so "Enter..." would only
# arrive whole when the cursor first blinks off, half a second after the frame.
FIRST_FRAME_MARK = b"nter to generate"
# The footer's keys come a frame after the rest (Textual's Footer composes them once the screen's
# bindings are known); the first screen is complete when they are on it too. Both apps show this one.
FOOTER_MARK = b"palette"


def sdtui_script() -> str:
    script = Path(sys.executable).parent / "sdtui"
    return str(script) if script.exists() else "sdtui"


class TerminalSession:
    """A process on a pty of a given size; everything it writes is kept with its arrival time."""

    def __init__(self, argv: list[str], cols: int, rows: int, env: dict[str, str]):
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.master = master
        self.started = time.perf_counter()
        self.env = env
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                        start_new_session=True, close_fds=True)
        os.close(slave)
        self.chunks: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self.chunks.append((time.perf_counter(), data))

    def output_since(self, since: float) -> bytes:
        with self._lock:
            return b"".join(data for stamp, data in self.chunks if stamp >= since)

    def last_output(self) -> float:
        with self._lock:
            return self.chunks[-1][0] if self.chunks else self.started

    def bytes_between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(len(data) for stamp, data in self.chunks if start <= stamp <= end)

    def wait_for(self, mark: bytes, since: float, timeout: float = 60.0) -> float:
        """The arrival time of the first output after ``since`` containing ``mark``."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with self._lock:
                seen = b""
                for stamp, data in self.chunks:
                    if stamp < since:
                        continue
                    seen = seen[-len(mark):] + data
                    if mark in seen:
                        return stamp
            time.sleep(0.002)
        raise BenchTimeout(f"benchmark: no {mark!r} on the terminal within {timeout} s")

    def send(self, data: bytes) -> float:
        stamp = time.perf_counter()
        os.write(self.master, data)
        return stamp

    def close(self, stop_server: bool = True) -> None:
        """Quit the app (Ctrl+Q) and, unless told not to, stop the server it used."""
        try:
            self.send(b"\x11")  # Ctrl+Q
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
        os.close(self.master)
        if stop_server:
            stop_server_of(self.env)


def session_env(home: Path) -> dict[str, str]:
    return {**os.environ, "SDTUI_HOME": str(home), "TERM": "xterm-256color", "COLORTERM": "truecolor",
            "HF_HUB_OFFLINE": "1"}


def write_config(home: Path, **values) -> None:
    from tui.config import Settings, save_settings

    save_settings(Settings(**values), home / "config.toml")


def images_saved(home: Path) -> int:
    try:
        with sqlite3.connect(f"file:{home / 'history.db'}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM generations WHERE status = 'done'").fetchone()[0]
    except sqlite3.Error:
        return 0


# The log's "loaded <model> ... on <device> in N s" line: the model is ready. (The caption says
# "ready:" only while no picture is on the stage, and the last image from history is shown at start.)
READY_MARK = b"loaded "


def wait_ready(session: TerminalSession, timeout: float = 120) -> None:
    session.wait_for(READY_MARK, session.started, timeout)


def generate_and_wait(session: TerminalSession, home: Path, prompt: bytes = b"a red fox") -> tuple[float, float]:
    before = images_saved(home)
    began = session.send(prompt + b"\r")
    wait_until(lambda: images_saved(home) > before, 300, "image saved by the app in the terminal", 0.02)
    # The server saves the image; the app draws it from the pixels it was sent just before, and
    # marks the job "done" in the status line after that: the job's bytes end with that mark.
    session.wait_for(b"done", began, timeout=60)
    time.sleep(0.3)
    return began, session.last_output()


# The yardstick for start-up: a minimal Textual app with the widgets sdtui's first screen is built
# of (a Header, an Input with the prompt's placeholder, a Static, a Log and a Footer), started as
# ``sdtui`` is (an executable Python script of the same interpreter), so the same mark ends its
# first frame. What sdtui takes beyond it is sdtui's own imports and composition.
MINIMAL_APP = """#!{python}
from textual.app import App, ComposeResult
from textual.widgets import Footer, Header, Input, Log, Static


class Minimal(App):
    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="Enter to generate")
        yield Static("a picture would be here")
        yield Log()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Log).write_line("started")


if __name__ == "__main__":
    Minimal().run()
"""


def minimal_app_script(folder: Path) -> str:
    """The minimal app's script, written into ``folder`` and made executable."""
    path = folder / "minimal_textual_app.py"
    path.write_text(MINIMAL_APP.format(python=sys.executable))
    path.chmod(0o755)
    return str(path)


def compiled_env(home: Path, pycache: Path) -> dict[str, str]:
    """session_env with Python's compiled bytecode kept in ``pycache``, as an installed package
    has its own: a PYTHONDONTWRITEBYTECODE in this environment would otherwise make every run
    compile sdtui's source again (0.1 s more on the 2-core VM), which no installed sdtui does."""
    env = {**session_env(home), "PYTHONPYCACHEPREFIX": str(pycache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def first_frame(argv: list[str], env: dict[str, str], is_sdtui: bool) -> tuple[float, float]:
    """Process start until the prompt box's placeholder (FIRST_FRAME_MARK) is on the 100x30 pty, and
    until the whole first screen is (the footer's keys, FOOTER_MARK, too). sdtui is left to connect
    (its server starts after the first frame) before it quits and the server stops, so no server is
    left working during the next run."""
    session = TerminalSession(argv, 100, 30, env)
    try:
        prompt, footer = (session.wait_for(mark, session.started) for mark in (FIRST_FRAME_MARK, FOOTER_MARK))
        if is_sdtui:
            wait_ready(session)
    finally:
        session.close(stop_server=is_sdtui)
    return prompt - session.started, max(prompt, footer) - session.started


def measure_startup(repeats: int) -> dict:
    """sdtui's first frame against the minimal Textual app's, the same way in the same pty size,
    alternating runs, after one untimed run of both (which warms the disk cache and compiles
    both to bytecode, see compiled_env). The first frame is the whole first screen; the prompt's
    arrival alone is kept beside it."""
    scratch = Path(tempfile.mkdtemp(prefix="sdtui-minimal-"))
    minimal = [minimal_app_script(scratch)]
    sdtui = [sdtui_script(), "--demo"]
    runs = {"first_frame": [], "minimal_first_frame": [], "prompt": [], "minimal_prompt": []}
    for number in range(repeats + 1):
        env = compiled_env(Path(tempfile.mkdtemp(prefix="sdtui-start-")), scratch / "pycache")
        app_prompt, app_whole = first_frame(sdtui, env, True)
        minimal_prompt, minimal_whole = first_frame(minimal, env, False)
        if number:  # the first pair warms the caches
            for key, value in (("first_frame", app_whole), ("minimal_first_frame", minimal_whole),
                               ("prompt", app_prompt), ("minimal_prompt", minimal_prompt)):
                runs[key].append(value)
    runs["import"] = []
    for _ in range(repeats):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch, diffusers"], check=True, timeout=300)
        runs["import"].append(time.perf_counter() - began)
    median = {key: statistics.median(values) for key, values in runs.items()}
    return {"first_frame_s": round(median["first_frame"], 3),
            "minimal_first_frame_s": round(median["minimal_first_frame"], 3),
            "first_frame_ratio": round(median["first_frame"] / median["minimal_first_frame"], 3),
            "prompt_s": round(median["prompt"], 3), "minimal_prompt_s": round(median["minimal_prompt"], 3),
            "prompt_ratio": round(median["prompt"] / median["minimal_prompt"], 3),
            "import_torch_diffusers_s": round(median["import"], 3), "runs": runs}


def measure_responsiveness(samples: int, size: int = 512, settle_s: float = 3.0) -> dict:
    """A key typed into the prompt box while images of ``size`` generate, until it is on screen."""
    home = Path(tempfile.mkdtemp(prefix="sdtui-keys-"))
    write_config(home, steps=20, width=size, height=size, count=100)
    session = TerminalSession([sdtui_script(), "--demo"], 120, 40, session_env(home))
    wait_ready(session)
    session.send(b"a fox\r")
    time.sleep(settle_s)  # well into the job
    latencies = []
    rng = random.Random(1)
    for _ in range(samples):
        sent = session.send(b"~")
        latencies.append(session.wait_for(b"~", sent, timeout=10) - sent)
        time.sleep(rng.uniform(0.1, 0.3))
    session.send(b"\x1b")  # cancel
    session.close()
    ordered = sorted(latencies)
    return {"p50_ms": round(1000 * statistics.median(ordered), 1),
            "p95_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
            "max_ms": round(1000 * ordered[-1], 1), "samples": len(ordered), "size": size}


def measure_quit(repeats: int, generating: bool, size: int = 512) -> dict:
    """Ctrl+Q until the process has exited and the shell has the terminal back, idle or while
    images of ``size`` generate."""
    times = []
    for _ in range(repeats):
        home = Path(tempfile.mkdtemp(prefix="sdtui-quit-"))
        write_config(home, steps=200, width=size, height=size)
        session = TerminalSession([sdtui_script(), "--demo"], 100, 30, session_env(home))
        wait_ready(session)
        if generating:
            began = session.send(b"a fox\r")
            session.wait_for(b"it/s", began, timeout=120)  # the first step is on screen
        sent = session.send(b"\x11")
        try:
            session.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            session.process.kill()
            raise BenchTimeout("benchmark: sdtui did not exit within 30 s of Ctrl+Q") from None
        times.append(time.perf_counter() - sent)
        os.close(session.master)
        stop_server_of(session.env)  # quitting leaves the server, and its job, running
    ordered = sorted(times)
    return {"generating": generating, "median_s": round(statistics.median(ordered), 3),
            "max_s": round(ordered[-1], 3), "runs": times}


def measure_bandwidth(cols: int, rows: int, previews: bool, jobs: int, size: int = 512) -> dict:
    home = Path(tempfile.mkdtemp(prefix="sdtui-bytes-"))
    write_config(home, steps=20, width=size, height=size, previews=previews)
    session = TerminalSession([sdtui_script(), "--demo"], cols, rows, session_env(home))
    wait_ready(session)
    generate_and_wait(session, home)  # warm-up
    per_job, per_second = [], []
    for _ in range(jobs):
        time.sleep(0.5)
        began, ended = generate_and_wait(session, home)
        sent = session.bytes_between(began, ended)
        per_job.append(sent)
        per_second.append(sent / (ended - began))
    session.close()
    return {"terminal": f"{cols}x{rows}", "previews": previews,
            "bytes_per_generation": int(statistics.median(per_job)),
            "bytes_per_second": int(statistics.median(per_second))}


TERMINALS = ((100, 30, True), (200, 60, True), (200, 60, False))


def run(repeats: int, smoke: bool = False) -> dict:
    """Every measure; ``smoke`` runs each once on 64x64 images (keys while 128x128 ones generate)."""
    if smoke:
        return {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "smoke": True,
                "startup": measure_startup(1),
                "responsiveness": measure_responsiveness(3, size=128, settle_s=1.0),
                "quit": [measure_quit(1, False), measure_quit(1, True, size=64)],
                "bandwidth": [measure_bandwidth(100, 30, True, 1, size=64)]}
    return {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
            "startup": measure_startup(repeats),
            "responsiveness": measure_responsiveness(6 * repeats),
            "quit": [measure_quit(repeats, False), measure_quit(repeats, True)],
            "bandwidth": [measure_bandwidth(c, r, p, repeats) for c, r, p in TERMINALS]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="each measure once, on small images")
    parser.add_argument("--startup", action="store_true", help="only start-up to first frame, against the "
                                                                "minimal Textual app")
    args = parser.parse_args()
    if args.startup:
        start = measure_startup(1 if args.smoke else args.repeats)
        print(startup_report(start))
        save_result("terminal-startup.json", {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
                                              "startup": start})
        return
    result = run(args.repeats, args.smoke)
    print(report(result))
    save_result("terminal.json", result)


def startup_report(start: dict) -> str:
    """sdtui's first frame and the minimal Textual app's, side by side, and their ratio."""
    return "\n".join([
        "start-up to first frame, 100x30 pty".ljust(55)
        + f"sdtui --demo {start['first_frame_s']:.3f} s, minimal Textual app {start['minimal_first_frame_s']:.3f} s: "
          f"{start['first_frame_ratio']:.2f}x (medians of {len(start['runs']['first_frame'])}, alternating)",
        "  of which the prompt box on screen".ljust(55)
        + f"sdtui --demo {start['prompt_s']:.3f} s, minimal Textual app {start['minimal_prompt_s']:.3f} s: "
          f"{start['prompt_ratio']:.2f}x",
        "python -c 'import torch, diffusers'".ljust(55) + f"{start['import_torch_diffusers_s']:.3f} s"])


def report(result: dict) -> str:
    keys = result["responsiveness"]
    lines = [*startup_report(result["startup"]).splitlines(),
             f"key press to screen while generating {keys['size']}x{keys['size']}".ljust(55)
             + f"p50 {keys['p50_ms']:.1f} ms, p95 {keys['p95_ms']:.1f} ms, max {keys['max_ms']:.1f} ms "
               f"({keys['samples']} keys)"]
    for q in result["quit"]:
        lines.append(f"Ctrl+Q to the shell, {'while generating' if q['generating'] else 'idle'}".ljust(55)
                     + f"median {q['median_s']:.3f} s, max {q['max_s']:.3f} s")
    for b in result["bandwidth"]:
        lines.append(f"bytes to the terminal, {b['terminal']} previews {'on ' if b['previews'] else 'off'}"
                     f"           {b['bytes_per_generation'] / 1024:8.1f} KB per image, "
                     f"{b['bytes_per_second'] / 1024:6.1f} KB/s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
