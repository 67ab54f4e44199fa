"""The installed ``sdtui`` in a real pseudo-terminal, as an SSH session runs it: start-up
to first frame, key-press-to-screen latency while generating, and bytes written to the
terminal (what an SSH link carries) per generation and per second.

Run: python -m tests.bench.terminal [--repeats N]   (writes bench-results/terminal.json)
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

from tests.bench import save_result

FIRST_FRAME_MARK = b"Enter to generate"  # the prompt box's placeholder: the whole first screen is drawn


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
        raise TimeoutError(f"no {mark!r} within {timeout} s")

    def send(self, data: bytes) -> float:
        stamp = time.perf_counter()
        os.write(self.master, data)
        return stamp

    def close(self) -> None:
        try:
            self.send(b"\x11")  # Ctrl+Q
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
        os.close(self.master)


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


def wait_ready(session: TerminalSession, timeout: float = 120) -> None:
    session.wait_for(b"ready:", session.started, timeout)


def generate_and_wait(session: TerminalSession, home: Path, prompt: bytes = b"a red fox") -> tuple[float, float]:
    before = images_saved(home)
    began = session.send(prompt + b"\r")
    deadline = time.perf_counter() + 300
    while images_saved(home) == before:
        if time.perf_counter() > deadline:
            raise TimeoutError("the image was not saved")
        time.sleep(0.02)
    return began, time.perf_counter()


def measure_startup(repeats: int) -> dict:
    first_frames = []
    for _ in range(repeats):
        home = Path(tempfile.mkdtemp(prefix="sdtui-start-"))
        session = TerminalSession([sdtui_script(), "--demo"], 100, 30, session_env(home))
        first_frames.append(session.wait_for(FIRST_FRAME_MARK, session.started) - session.started)
        wait_ready(session)
        session.close()
    imports = []
    for _ in range(repeats):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch, diffusers"], check=True)
        imports.append(time.perf_counter() - began)
    return {"first_frame_s": round(statistics.median(first_frames), 3),
            "import_torch_diffusers_s": round(statistics.median(imports), 3),
            "runs": {"first_frame": first_frames, "import": imports}}


def measure_responsiveness(samples: int) -> dict:
    """A key typed into the prompt box while 512x512 images generate, until it is on screen."""
    home = Path(tempfile.mkdtemp(prefix="sdtui-keys-"))
    write_config(home, steps=20, width=512, height=512, count=100)
    session = TerminalSession([sdtui_script(), "--demo"], 120, 40, session_env(home))
    wait_ready(session)
    session.send(b"a fox\r")
    time.sleep(3)  # well into the job
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
            "max_ms": round(1000 * ordered[-1], 1), "samples": len(ordered)}


def measure_bandwidth(cols: int, rows: int, previews: bool, jobs: int) -> dict:
    home = Path(tempfile.mkdtemp(prefix="sdtui-bytes-"))
    write_config(home, steps=20, width=512, height=512, previews=previews)
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    result = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
              "startup": measure_startup(args.repeats),
              "responsiveness": measure_responsiveness(6 * args.repeats),
              "bandwidth": [measure_bandwidth(c, r, p, args.repeats) for c, r, p in
                            ((100, 30, True), (200, 60, True), (200, 60, False))]}
    print(report(result))
    save_result("terminal.json", result)


def report(result: dict) -> str:
    start, keys = result["startup"], result["responsiveness"]
    lines = [f"start-up to first frame (sdtui --demo in a 100x30 pty)  {start['first_frame_s']:.3f} s   "
             f"(python -c 'import torch, diffusers': {start['import_torch_diffusers_s']:.3f} s)",
             f"key press to screen while generating 512x512           p50 {keys['p50_ms']:.1f} ms, "
             f"p95 {keys['p95_ms']:.1f} ms, max {keys['max_ms']:.1f} ms ({keys['samples']} keys)"]
    for b in result["bandwidth"]:
        lines.append(f"bytes to the terminal, {b['terminal']} previews {'on ' if b['previews'] else 'off'}"
                     f"           {b['bytes_per_generation'] / 1024:8.1f} KB per image, "
                     f"{b['bytes_per_second'] / 1024:6.1f} KB/s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
