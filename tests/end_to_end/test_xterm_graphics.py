"""The app in a real xterm (a VT340 with Sixel) on a virtual X screen: with ``auto`` it finds
Sixel and the screenshot shows the image at the screen's own pixels; with half blocks it does
not, so the check can tell the two apart."""

import os
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import sdtui_command

pytestmark = pytest.mark.skipif(any(shutil.which(tool) is None for tool in ("xterm", "Xvfb", "xwd")),
                                reason="xterm, Xvfb and xwd are not installed (.ci/run installs them)")


def read_xwd(data: bytes) -> np.ndarray:
    """An X window dump (xwd -root) as an RGB array; TrueColor, 24 or 32 bits a pixel."""
    fields = struct.unpack(">25I", data[:100])
    header_size, width, height = fields[0], fields[4], fields[5]
    byte_order, bits_per_pixel, bytes_per_line, ncolors = fields[7], fields[11], fields[12], fields[19]
    masks = fields[14:17]
    start = header_size + ncolors * 12
    rows = np.frombuffer(data[start:start + bytes_per_line * height], dtype=np.uint8).reshape(height, bytes_per_line)
    step = bits_per_pixel // 8
    pixels = rows[:, :width * step].reshape(height, width, step)
    if byte_order == 0:  # LSBFirst
        pixels = pixels[:, :, ::-1]
    value = np.zeros((height, width), dtype=np.uint32)
    for byte in range(step):
        value = (value << 8) | pixels[:, :, byte]
    channels = []
    for mask in masks:
        shift = (mask & -mask).bit_length() - 1
        channels.append(((value & mask) >> shift).astype(np.uint8))
    return np.stack(channels, axis=-1)


@pytest.fixture(scope="module")
def display():
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1024x700x24", "-nolisten", "tcp"],
                              pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    number = b""
    deadline = time.monotonic() + 30
    while not number.endswith(b"\n") and time.monotonic() < deadline:
        number += os.read(read, 16)
    os.close(read)
    assert number.strip(), "Xvfb did not start"
    yield f":{number.strip().decode()}"
    server.terminate()
    server.wait(10)


def screenshot_of_app(display: str, home: Path, graphics: str) -> np.ndarray:
    log = home / "logs" / "sdtui.log"
    start = log.stat().st_size if log.exists() else 0  # the server keeps the file open: read on from here

    def since_start() -> str:
        return log.read_bytes()[start:].decode("utf-8", "replace") if log.exists() else ""

    command = " ".join(["env -u COLUMNS -u LINES TERM=xterm-256color COLORTERM=truecolor", f"SDTUI_HOME={home}",
                        *sdtui_command(), "--demo", "--graphics", graphics])
    term = subprocess.Popen(["xterm", "-ti", "vt340", "-geometry", "100x30+0+0", "-fa", "Monospace", "-fs", "9",
                             "-e", command], env={**os.environ, "DISPLAY": display},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        # The server ``sdtui generate`` started stays, with the model: "already loaded" for the app.
        while not ("pictures: " in since_start()
                   and re.search("loaded demo|demo model \\(random weights\\) is already loaded", since_start())):
            assert time.monotonic() < deadline, "the app in xterm never decided how to draw"
            assert term.poll() is None, "xterm exited"
            time.sleep(0.2)
        time.sleep(1.5)  # the picture is drawn once the choice is made
        dump = subprocess.run(["xwd", "-root", "-silent"], env={**os.environ, "DISPLAY": display},
                              capture_output=True, timeout=30, check=True).stdout
        return window_of(read_xwd(dump)), since_start()
    finally:
        term.terminate()
        term.wait(10)


def window_of(shot: np.ndarray) -> np.ndarray:
    """The xterm window alone: its size follows the font's metrics, and the screen around it is black."""
    lit = np.argwhere(shot.max(axis=2) > 0)
    (top, left), (bottom, right) = lit.min(axis=0), lit.max(axis=0)
    return shot[top:bottom + 1, left:right + 1]


def colours_per_block(shot: np.ndarray, block: int = 4) -> float:
    """Median number of distinct colours in block x block squares of the left third of the
    window (where the picture is): one or two for half blocks, many for real pixels."""
    height, width = shot.shape[:2]
    area = shot[height // 5:height * 3 // 5, width // 50:width // 3]
    counts = []
    for y in range(0, area.shape[0] - block, block):
        for x in range(0, area.shape[1] - block, block):
            square = area[y:y + block, x:x + block].reshape(-1, 3)
            counts.append(len({tuple(p) for p in square.tolist()}))
    return float(np.median(counts))


def test_xterm_shows_the_image_through_sixel(display, tmp_path):
    home = tmp_path / "home"
    done = subprocess.run(sdtui_command() + ["generate", "for xterm", "--demo", "--steps", "2", "--width", "256",
                                             "--height", "256"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SDTUI_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    shot, log = screenshot_of_app(display, home, "auto")
    assert "pictures: sixel (the terminal lists Sixel" in log
    sixel = colours_per_block(shot)
    shot_blocks, log = screenshot_of_app(display, home, "halfblock")
    assert "pictures: half blocks (set to halfblock)" in log
    blocks = colours_per_block(shot_blocks)
    print("colours per 4x4 block: sixel", sixel, "half blocks", blocks)
    assert blocks <= 2 and sixel >= 6, (sixel, blocks)
    # Both show the same picture: its mean colour agrees.
    from PIL import Image

    image = np.asarray(Image.open(next((home / "outputs").rglob("*.png"))).convert("RGB"), dtype=float)
    height, width = shot.shape[:2]
    area = shot[height // 5:height * 3 // 5, width // 50:width // 3].reshape(-1, 3).mean(axis=0)
    assert np.abs(area - image.reshape(-1, 3).mean(axis=0)).max() < 25
