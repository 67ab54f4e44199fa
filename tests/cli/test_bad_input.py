"""Bad input, one table per way in: command-line flags, config.toml, model paths, the
outputs folder and a full disk. Every case must end in one sentence that names the field
and what is allowed (never a traceback), and must lose nothing: the image and history
row made before it are still there, byte for byte. The app's tables are in
test_bad_input_app.py."""

from __future__ import annotations

import resource
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import demo_serving, run_sdtui, sdtui_command
from tests.reliability import MODEL_PATHS, assert_nothing_lost, history_rows

SMALL = ["--steps", "1", "--width", "64", "--height", "64"]
NASTY_MODEL = "demo\x1b]52;c;c2R0dWk=\x07"


def assert_one_clear_line(result, words: str, codes=(1, 2)) -> str:
    assert result.returncode in codes, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    last = result.stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith("sdtui: ") and words in last, last
    assert "\x1b" not in result.stderr.replace("\r\x1b[2K", ""), "a control character reached the terminal"
    return last


# --- flags ----------------------------------------------------------------------------------

FLAGS = [
    ("empty prompt", ["generate", ""], "prompt: must not be empty"),
    ("blank prompt", ["generate", " \t "], "prompt: must not be empty or blank"),
    ("100,000-character prompt", ["generate", "fox " * 25_000], "prompt: 100,000 characters is too long"),
    ("100,000-character negative", ["generate", "x", "--negative", "n" * 100_000],
     "negative prompt: 100,000 characters is too long"),
    ("steps not a number", ["generate", "x", "--steps", "many"], "steps: 'many' is not a whole number"),
    ("steps fractional", ["generate", "x", "--steps", "1.5"], "steps"),
    ("steps negative", ["generate", "x", "--steps", "-1"], "steps: -1 is outside 1..500"),
    ("steps too many", ["generate", "x", "--steps", "501"], "steps: 501 is outside 1..500"),
    ("guidance infinite", ["generate", "x", "--guidance", "inf"], "guidance"),
    ("guidance negative", ["generate", "x", "--guidance", "-0.5"], "guidance"),
    ("width zero", ["generate", "x", "--width", "0"], "width"),
    ("width huge", ["generate", "x", "--width", "99999"], "width"),
    ("height odd", ["generate", "x", "--height", "63"], "height"),
    ("seed too big", ["generate", "x", "--seed", "18446744073709551616"], "seed"),
    ("seed text", ["generate", "x", "--seed", "lucky"], "seed"),
    ("count zero", ["generate", "x", "--count", "0"], "count"),
    ("scheduler empty", ["generate", "x", "--scheduler", ""], "scheduler"),
    ("device unknown", ["generate", "x", "--device", "tpu"], "--device"),
    ("dtype unknown", ["generate", "x", "--dtype", "float8"], "--dtype"),
    ("slicing unknown", ["generate", "x", "--attention-slicing", "maybe"], "--attention-slicing"),
    ("unknown flag", ["generate", "x", "--stepz", "3"], "--stepz"),
    ("no subcommand value", ["generate"], "PROMPT"),
    ("model and demo", ["generate", "x", "--model", "a/b", "--demo"], "--demo"),
    ("control characters in a model name", ["generate", "x", "--model", NASTY_MODEL], "model"),
]


@pytest.mark.parametrize("args,words", [c[1:] for c in FLAGS], ids=[c[0] for c in FLAGS])
def test_bad_flags(made_before, sdtui_home, args, words):
    demo = [] if "--model" in args or "--demo" in args else ["--demo"]
    result = run_sdtui([*args, *demo], timeout=60)
    assert_one_clear_line(result, words, codes=(2,))
    assert result.stdout == ""
    assert_nothing_lost(sdtui_home, made_before)


# --- config.toml ----------------------------------------------------------------------------

CONFIGS = [
    ("unknown key", "stepz = 4", "unknown key 'stepz'"),
    ("wrong type", 'steps = "four"', "steps: 'four' is not a whole number"),
    ("out of range", "guidance = 80", "guidance"),
    ("a table", "[steps]\nvalue = 4", "steps = {'value': 4} is not allowed"),
    ("a list", "width = [512]", "width = [512] is not allowed"),
    ("not TOML", "steps = = 4", "not valid TOML"),
    ("duplicate key", "steps = 4\nsteps = 5", "not valid TOML"),
    ("not UTF-8", b"steps = \xff\xfe", "not UTF-8"),
    ("code as a value", "steps = \"__import__('os').system('touch PWNED')\"", "steps"),
    ("a model with NUL", 'model = "demo\\u0000"', "model"),
    ("outputs with NUL", 'outputs_dir = "out\\u0000put"', "outputs_dir"),
    ("models_dir as a number", "models_dir = 3", "models_dir = 3 is not allowed; use a folder path"),
    ("empty model", 'model = " "', "model"),
]


@pytest.mark.parametrize("text,words", [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_bad_config_files(made_before, sdtui_home, tmp_path, text, words):
    config = sdtui_home / "config.toml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    for args in (["generate", "x", *SMALL], []):  # headless, and the app, which must not start half-way
        result = run_sdtui(args, timeout=60, cwd=tmp_path)
        last = assert_one_clear_line(result, words, codes=(2,))
        assert "config.toml" in last
    assert not (tmp_path / "PWNED").exists()
    assert_nothing_lost(sdtui_home, made_before)


def test_a_config_file_that_is_a_folder_is_one_line(made_before, sdtui_home):
    (sdtui_home / "config.toml").mkdir()
    assert_one_clear_line(run_sdtui(["generate", "x", "--demo", *SMALL], timeout=60), "config.toml", codes=(2,))
    assert_nothing_lost(sdtui_home, made_before)


# --- model paths ----------------------------------------------------------------------------

@pytest.mark.parametrize("make,words", [c[1:] for c in MODEL_PATHS], ids=[c[0] for c in MODEL_PATHS])
def test_bad_model_paths(made_before, demo_server, sdtui_home, tmp_path, tiny_pipeline_dir, make, words):
    model = make(tmp_path, tiny_pipeline_dir)
    result = run_sdtui(["generate", "x", "--model", str(model), *SMALL], env_extra={"HF_HUB_OFFLINE": "1"})
    last = assert_one_clear_line(result, words)
    assert "model" in last
    assert result.stdout == ""
    assert_nothing_lost(sdtui_home, made_before)


# --- where images go ------------------------------------------------------------------------

def test_an_outputs_folder_that_cannot_be_made_fails_the_save_and_keeps_the_seed(made_before, sdtui_home, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    (sdtui_home / "config.toml").write_text(f'outputs_dir = "{blocker / "outputs"}"\n')
    with demo_serving(sdtui_home):
        result = run_sdtui(["generate", "lost for now", "--demo", "--seed", "11", *SMALL])
    assert_one_clear_line(result, "saving failed: Not a directory", codes=(1,))
    assert_nothing_lost(sdtui_home, made_before)
    failed = history_rows(sdtui_home)[-1]
    assert failed[1:4] == ("lost for now", 11, "failed") and failed[4] is None


def _with_file_size_limit(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))  # raised again below
    return apply


def test_a_file_size_limit_fails_the_save_with_efbig_and_leaves_no_partial_file(made_before, sdtui_home):
    # RLIMIT_FSIZE makes the kernel refuse the PNG's writes past 64 KB with EFBIG, as a
    # full quota would; the history database and log stay far below it.
    command = sdtui_command() + ["generate", "too big", "--demo", "--seed", "12", "--steps", "1",
                                 "--width", "256", "--height", "256"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            preexec_fn=_with_file_size_limit(64 * 1024))
    assert_one_clear_line(result, "saving failed: File too large", codes=(1,))
    assert_nothing_lost(sdtui_home, made_before)
    assert history_rows(sdtui_home)[-1][1:4] == ("too big", 12, "failed")
    outputs = sdtui_home / "outputs"
    assert sorted(p.name for p in outputs.rglob("*") if p.is_file()) == [
        Path(p).name for p in made_before[1]], "a partial file was left behind"
    # The server the limited command started runs under its limit; lifted, as when space is freed,
    # the same seed makes the image.
    from tui.client.connection import server_pid

    subprocess.run(["prlimit", "--pid", str(server_pid(sdtui_home.resolve())), "--fsize=unlimited"], check=True)
    again = run_sdtui(["generate", "too big", "--demo", "--seed", "12", "--steps", "1",
                       "--width", "256", "--height", "256"])
    assert again.returncode == 0, "once there is room, the same seed makes the image"


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A real 256 KB filesystem (tmpfs), where the disk can fill up; needs root."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small filesystem here (needs root); the RLIMIT_FSIZE case covers EFBIG")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=False)


def test_a_full_disk_fails_the_save_with_enospc_and_the_next_job_runs(made_before, sdtui_home, tiny_filesystem):
    (tiny_filesystem / "filler").write_bytes(b"\0" * 200 * 1024)
    (sdtui_home / "config.toml").write_text(f'outputs_dir = "{tiny_filesystem / "outputs"}"\n')
    big = ["--steps", "1", "--width", "256", "--height", "256"]
    with demo_serving(sdtui_home):
        result = run_sdtui(["generate", "no room", "--demo", "--seed", "13", *big])
        assert_one_clear_line(result, "saving failed: No space left on device", codes=(1,))
        assert history_rows(sdtui_home)[-1][1:4] == ("no room", 13, "failed")
        assert [p for p in (tiny_filesystem / "outputs").rglob("*") if p.is_file()] == []
        (tiny_filesystem / "filler").unlink()
        again = run_sdtui(["generate", "no room", "--demo", "--seed", "13", *big])
    assert again.returncode == 0, again.stderr
    assert Path(again.stdout.strip()).parent.parent == tiny_filesystem / "outputs"
    assert_nothing_lost(sdtui_home, made_before)


def test_a_disk_that_fills_up_in_the_app_says_so_and_the_next_job_saves(sdtui_home):
    """The real app in a terminal under a 64 KB file size limit: the 256x256 image cannot be
    written (EFBIG); once the limit is lifted, as when space is freed, the next job saves."""
    from tests.bench.terminal import TerminalSession, sdtui_script, session_env, wait_ready, write_config

    write_config(sdtui_home, steps=1, width=256, height=256, seed=31)
    session = TerminalSession(["prlimit", f"--fsize={64 * 1024}:unlimited", "--", sdtui_script(), "--demo"], 120, 40,
                              session_env(sdtui_home))
    try:
        wait_ready(session)
        sent = session.send(b"too big\r")
        session.wait_for(b"File too large", sent, timeout=60)
        assert session.process.poll() is None, "the app is still running"
        from tui.locations import locations
        from tui.client.connection import server_pid

        writer = server_pid(locations().data_dir)  # the app's server inherited the limit, and writes
        assert writer is not None
        subprocess.run(["prlimit", "--pid", str(writer), "--fsize=unlimited"], check=True)
        session.send(b"\x15")  # Ctrl+U clears the prompt box
        time.sleep(0.3)
        session.send(b"now it fits\r")
        deadline = time.monotonic() + 60
        while len(history_rows(sdtui_home)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        session.close()
    rows = history_rows(sdtui_home)
    assert [r[1:4] for r in rows] == [("too big", 31, "failed"), ("now it fits", 31, "done")]
    with sqlite3.connect(sdtui_home / "history.db") as db:
        assert db.execute("SELECT error FROM generations WHERE id = 1").fetchone()[0].startswith(
            "saving failed: File too large")
    files = [p for p in (sdtui_home / "outputs").rglob("*") if p.is_file()]
    assert [str(p) for p in files] == [rows[1][4]], "only the saved image, no partial file"
