"""Security: untrusted text never reaches the terminal as control sequences, file names made
from prompts stay inside the outputs folder, nothing goes on the network unless a download
was asked for, pickle stays refused, and the config file is data only."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.bench.terminal import TerminalSession, sdtui_script, session_env, wait_ready, write_config
from tests.conftest import run_sdtui
from tests.reliability import history_rows
from tui.engine.request import GenerationRequest
from tui.store.history import History, HistoryEntry

# Each payload is something a terminal would act on: set the clipboard, plant a link, ask for
# the cursor position (the answer arrives as typed input), blink, clear the screen, reorder text.
PAYLOADS = {
    "OSC 52 clipboard": "\x1b]52;c;c2R0dWstbGVhaw==\x07",
    "OSC 8 link": "\x1b]8;;http://evil.example/\x1b\\",
    "cursor position query": "\x1b[6n",
    "blink": "\x1b[5m",
    "clear screen and home": "\x1b[2J\x1b[H",
    "right-to-left override": "\u202e",
}
NASTY = "[bold]not markup[/bold] [@click=app.quit]q[/] fox " + " ".join(PAYLOADS.values())


def test_nothing_untrusted_reaches_the_terminal_raw(sdtui_home, tmp_path):
    """A prompt, a negative prompt, an outputs folder name and an adopted PNG's file name and
    metadata all carry the payloads; the app shows them (prompt box, caption, log, history
    list and details) and not one payload byte sequence reaches the terminal."""
    nasty_outputs = tmp_path / ("outputs" + PAYLOADS["OSC 52 clipboard"])
    write_config(sdtui_home, steps=2, width=64, height=64, negative_prompt=NASTY, outputs_dir=str(nasty_outputs))
    made = run_sdtui(["generate", NASTY, "--demo"])
    assert made.returncode == 0, made.stderr
    # stdout is a pipe here, so the saved path comes exactly (payload and all) for scripts to use.
    assert [name for name, payload in PAYLOADS.items() if payload in made.stderr] == []
    # A PNG dropped into the outputs folder under a hostile name, with hostile metadata:
    # the app adopts it into the history at start-up.
    request = GenerationRequest(NASTY, negative_prompt=NASTY, seed=4, width=64, height=64, steps=2)
    dropped = History(tmp_path / "scratch.db", tmp_path / "scratch")
    path = dropped.save_image(Image.new("RGB", (64, 64), "red"), request, 4, 0,
                              HistoryEntry.for_request(request, "done"), {"model": NASTY})
    dropped.close()
    os.replace(path, nasty_outputs / ("dropped" + PAYLOADS["cursor position query"] + ".png"))

    session = TerminalSession([sdtui_script(), "--demo"], 140, 45, session_env(sdtui_home))
    try:
        wait_ready(session)
        session.send(b"\x1b[A")  # Up: the nasty prompt into the prompt box
        time.sleep(0.5)
        before = len(history_rows(sdtui_home))
        session.send(b"\r")  # generate it: caption, progress, log line with the nasty path
        deadline = time.monotonic() + 60
        while len(history_rows(sdtui_home)) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        session.send(b"\x1bOQ")  # F2: the history list and the details of each entry
        time.sleep(1.0)
        for _ in range(3):
            session.send(b"\x1b[B")
            time.sleep(0.4)
        output = session.output_since(0)
        assert session.process.poll() is None
    finally:
        session.close()
    assert len(history_rows(sdtui_home)) == 3, "the CLI's image, the adopted one and the app's"
    leaked = [name for name, payload in PAYLOADS.items() if payload.encode() in output]
    assert leaked == [], f"reached the terminal raw: {leaked}"
    text = re.sub(r"\x1b\[[0-9;?<>=$]*[A-Za-z~]", "", output.decode("utf-8", "replace"))  # Textual's own
    assert "\\x1b]52;c;c2R0dWstbGVhaw==" in text or "␛]52;c;c2R0dWstbGVhaw==" in text, "the payload is shown, inert"
    assert "[bold]not markup[/bold]" in text


@pytest.mark.parametrize("prompt", ["../../../etc/passwd", "/etc/passwd", "..", "CON", "nul", "com1", "LPT9",
                                    "a/b\\c:d*e?f\"g<h>i|j", "~root/.ssh/authorized_keys", "$(touch x)`id`",
                                    "🦊🦊🦊", "\x1b]52;c;eA==\x07", " . . . "])
def test_file_names_from_prompts_stay_inside_the_outputs_folder(tmp_path, prompt):
    outputs = tmp_path / "outputs"
    store = History(tmp_path / "history.db", outputs)
    try:
        request = GenerationRequest(prompt, seed=1, width=64, height=64)
        path = store.save_image(Image.new("RGB", (8, 8)), request, 1, 0, HistoryEntry.for_request(request, "done"))
    finally:
        store.close()
    assert path.resolve().parent.parent == outputs.resolve()
    assert re.fullmatch(r"\d{6}-1-[a-z0-9-]+\.png", path.name), path.name
    stem = path.stem.split("-", 2)[2]
    assert stem.split(".")[0] not in {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
                                      *(f"lpt{i}" for i in range(10))}
    assert not (tmp_path / "x").exists()


NO_NETWORK = textwrap.dedent("""
    import json, sys
    attempts = []
    def audit(event, args):
        if event == "socket.connect" and isinstance(args[1], str):
            return  # a Unix socket path: sdtui generate talking to its own server on this machine
        if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "urllib.Request",
                     "http.client.connect"):
            attempts.append([event, repr(args)[:200]])
    sys.addaudithook(audit)
    import asyncio, os
    from tui.cli.main import main
    model = sys.argv[1]
    code = main(["generate", "a fox", "--model", model, "--steps", "1", "--width", "64", "--height", "64"])
    assert code == 0, code

    async def use_the_app():
        from tests.app_helpers import make_app, wait_for, wait_loaded
        app = make_app(model=model, steps=1, width=64, height=64)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_loaded(pilot, app)
            prompt = app.main_screen.query_one("#prompt")
            prompt.value = "a fox"
            prompt.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.history.count() == 2 and not app.session.busy)
            await pilot.press("f2")
            await pilot.pause(0.5)
            await pilot.press("escape")
            await pilot.press("f3")  # the model picker scans the Hugging Face cache
            await pilot.pause(1.0)
            await pilot.press("escape")
    asyncio.run(use_the_app())
    print(json.dumps(attempts))
""")


def test_nothing_goes_on_the_network_unless_a_download_is_asked_for(sdtui_home, tiny_pipeline_dir, hub_cache):
    """Generating from a local folder, in the CLI and the app, browsing history and the model
    picker: Python's audit hooks see every connect and name lookup, and there are none, with
    HF_HUB_OFFLINE and telemetry switches unset."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_HUB_OFFLINE", "HF_HUB_DISABLE",
                                                                     "TRANSFORMERS_OFFLINE", "DO_NOT_TRACK"))}
    result = subprocess.run([sys.executable, "-c", NO_NETWORK, str(tiny_pipeline_dir)], capture_output=True,
                            text=True, timeout=300, env=env, cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_pickle_stays_refused_unless_allowed(demo_server, sdtui_home, tmp_path):
    from tui.engine.demo import build_demo_pipeline

    folder = tmp_path / "pickled"
    build_demo_pipeline().save_pretrained(folder, safe_serialization=False)
    refused = run_sdtui(["generate", "x", "--model", str(folder), "--steps", "1", "--width", "64", "--height", "64"])
    assert refused.returncode == 1 and "--allow-pickle" in refused.stderr.splitlines()[-1]
    (sdtui_home / "config.toml").write_text("allow_pickle = true\n")
    configured = run_sdtui(["generate", "x", "--model", str(folder)])
    assert configured.returncode == 2 and "unknown key 'allow_pickle'" in configured.stderr, \
        "only the flag, given each time, allows pickle; config.toml cannot"


def test_the_config_file_is_data_and_cannot_run_code(sdtui_home, tmp_path):
    sdtui_home.mkdir()
    marker = tmp_path / "ran"
    code = f"__import__('os').system('touch {marker}')"
    cases = [f'model = "{code}"', f'outputs_dir = "{code}"', f'negative_prompt = "{code}"',
             f'scheduler = "{code}"', f"[{code}]\nx = 1", f'"{code}" = 1']
    for text in cases:
        (sdtui_home / "config.toml").write_text(text + "\n")
        result = run_sdtui(["generate", "x", "--demo", "--steps", "1", "--width", "64", "--height", "64"],
                           cwd=tmp_path)
        assert "Traceback" not in result.stderr, text
        assert not marker.exists(), f"{text} ran code"
