"""How `sdtui generate` hears its job end, whatever ended it: the real command as a client of a
real server process (the demo model), each failure said once, and an exit status that fits."""

import os
import signal
import subprocess
import time

import pytest

from tests.conftest import run_sdtui, sdtui_command
from tests.reliability import history_rows, start_generating
from tests.scripted_engine import serving
from tui.client.connection import connect, server_pid

SMALL = ["--steps", "1", "--width", "64", "--height", "64"]
LONG = 60  # steps of a 64x64 demo job that is still running while a second client comes and goes
OFFLINE = {"HF_HUB_OFFLINE": "1"}


def server_state(home) -> dict:
    with connect(home.resolve(), "test") as connection:
        return connection.request({"type": "status"}, "status")


def wait_for(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def generate_in_background(prompt: str) -> subprocess.Popen:
    return subprocess.Popen(sdtui_command() + ["generate", prompt, "--demo", *SMALL], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def queued_behind_a_long_job(home) -> tuple[subprocess.Popen, subprocess.Popen]:
    """A long job running (its client started the server) and a second client whose job waits."""
    first, _ = start_generating("first", LONG, 64)
    second = generate_in_background("second")
    wait_for(lambda: server_state(home)["waiting"] == [2], "the second job to wait in the queue")
    return first, second


def said(stderr: str) -> list[str]:
    """The command's own lines (progress and log lines aside)."""
    return [line for line in stderr.splitlines() if line.startswith("sdtui: ")]


@pytest.fixture
def warm_server(demo_server, sdtui_home):
    """A server holding the demo model, loaded by a first command, with the Hub off."""
    result = run_sdtui(["generate", "warm", "--demo", *SMALL], env_extra=OFFLINE)
    assert result.returncode == 0, result.stderr
    return sdtui_home


@pytest.fixture
def scripted_server(sdtui_home):
    """The server the commands find running: the real one, on a thread of the test, with a scripted
    engine whose steps take 0.1 s (a long job is 6 s), for tests of what the clients hear."""
    with serving(sdtui_home, step_s=0.1):
        yield sdtui_home


# --- a job that never runs or never finishes --------------------------------------------------

def test_a_generate_whose_job_waits_exits_on_sigterm_and_the_running_job_completes(scripted_server):
    sdtui_home = scripted_server
    first, second = queued_behind_a_long_job(sdtui_home)
    second.send_signal(signal.SIGTERM)
    _, err = second.communicate(timeout=30)  # it waited for ever for a JobDone that never came
    assert second.returncode == 128 + signal.SIGTERM, err
    assert said(err)[-1] == "sdtui: job 2 was cancelled before it started"
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert [(r[1], r[3]) for r in history_rows(sdtui_home)] == [("first", "done")]
    assert out.strip() == history_rows(sdtui_home)[0][4]


def test_a_generate_whose_job_waits_hears_that_another_client_cleared_the_queue(scripted_server):
    sdtui_home = scripted_server
    first, second = queued_behind_a_long_job(sdtui_home)
    with connect(sdtui_home.resolve(), "app") as app:  # what the app's clear queue sends
        assert app.request({"type": "clear_queue"}, "cleared")["count"] == 1
        _, err = second.communicate(timeout=30)
        assert second.returncode == 1, err
        assert said(err) == ["sdtui: job 2 was dropped from the queue by another sdtui client (the queue was "
                             "cleared); it never started"]
        assert app.request({"type": "cancel", "job": 1}, "cancel")["ok"] is True  # as the app's Escape does
    _, err = first.communicate(timeout=60)
    assert first.returncode == 1
    assert said(err) == ["sdtui: job 1 was cancelled from another sdtui client (the app, or its Escape key); "
                         "images finished before are saved"]


def test_a_server_that_stops_ends_every_job_its_clients_wait_for_and_its_log_says_why(sdtui_home):
    first, second = queued_behind_a_long_job(sdtui_home)
    pid = server_pid(sdtui_home.resolve())
    os.kill(pid, signal.SIGTERM)
    for number, client in enumerate((first, second), 1):
        _, err = client.communicate(timeout=60)
        assert client.returncode == 1, err
        assert said(err)[-1] == f"sdtui: job {number} did not finish: the sdtui server stopped (it got SIGTERM)"
        assert "went away" not in err  # the server said goodbye after telling each job's end
    server_log = (sdtui_home / "logs" / "server.log").read_text()
    assert f"server {pid} stopping: it got SIGTERM" in server_log


def test_sdtui_stop_is_in_the_server_log(sdtui_home):
    """The log a client names when its server goes away says why it did."""
    assert run_sdtui(["generate", "x", "--demo", *SMALL]).returncode == 0
    assert run_sdtui(["stop"]).returncode == 0
    assert "stopping: `sdtui stop` was run" in (sdtui_home / "logs" / "server.log").read_text()


# --- failures said once, bad input apart ------------------------------------------------------

def test_a_missing_lora_is_bad_input_said_once(warm_server):
    result = run_sdtui(["generate", "x", "--demo", *SMALL, "--lora", "nosuch"])
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["sdtui: LoRA: no 'nosuch' in the loras folder (it is empty)"]
    assert result.stdout == ""


def test_a_missing_lora_without_the_server_is_bad_input_said_once(sdtui_home):
    result = run_sdtui(["generate", "x <lora:nosuch:0.5>", "--demo", "--no-server", *SMALL])
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["sdtui: LoRA: no 'nosuch' in the loras folder (it is empty)"]


def test_an_unknown_model_is_bad_input_said_once_and_not_the_loaded_one(warm_server):
    result = run_sdtui(["generate", "x", "--model", "someone/no-such-model", *SMALL], env_extra=OFFLINE)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "loading someone/no-such-model (hub)",
        "sdtui: model: someone/no-such-model is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
        "give a local diffusers folder with --model PATH, or try the demo model with --demo"]


def test_a_model_that_fails_to_load_says_why_once_and_the_loaded_one_stays(warm_server):
    from tui.engine.demo import build_demo_pipeline

    folder = warm_server / "models" / "broken"
    build_demo_pipeline().save_pretrained(folder, safe_serialization=True)
    weights = next((folder / "unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    result = run_sdtui(["generate", "x", "--model", str(folder), *SMALL])
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert said(result.stderr) == [lines[-1]]
    assert lines[-1].startswith(f"sdtui: model: loading {folder} failed: ") and len(lines[-1]) > 60, lines
    assert lines[0] == "loading broken (folder)" and "using the server's loaded model" not in result.stderr
    assert server_state(warm_server)["model"] == "demo model (random weights)"  # loaded again


def test_the_loaded_model_is_named_only_for_a_job_that_uses_it(warm_server):
    result = run_sdtui(["generate", "x", "--demo", *SMALL])
    assert result.returncode == 0
    assert said(result.stderr) == ["sdtui: using the server's loaded model, demo model (random weights)"]


# --- -v -----------------------------------------------------------------------------------------

def test_verbose_shows_the_servers_log_lines_for_its_job(warm_server):
    quiet = run_sdtui(["generate", "x", "--demo", *SMALL])
    verbose = run_sdtui(["generate", "x", "--demo", "-v", *SMALL])
    assert verbose.returncode == 0, verbose.stderr
    assert "INFO tui.server.jobs: image 1/1 saved: " in verbose.stderr
    assert "INFO " not in quiet.stderr


# --- --no-server: the same client, with a server of its own --------------------------------------

def test_without_the_server_the_command_leaves_no_socket_and_no_thread(made_before, sdtui_home, capsys):
    """``generate --no-server`` runs the real server on a thread of its own process, on a socket of
    its own that is gone once the command is connected; when the command ends, so has the server."""
    import logging
    import threading

    from tests.conftest import RUNTIME
    from tui.cli.main import main

    rows, _ = made_before
    os.unlink(rows[0][4])  # the history finds it gone, and the command says so, as its server's first client
    handlers = {name: signal.getsignal(getattr(signal, name)) for name in ("SIGINT", "SIGTERM", "SIGHUP")}
    root_handlers = list(logging.getLogger().handlers)
    before = set(RUNTIME.iterdir())
    try:
        code = main(["generate", "x", "--demo", "--no-server", *SMALL])
    finally:
        for name, handler in handlers.items():
            signal.signal(getattr(signal, name), handler)
        for handler in set(logging.getLogger().handlers) - set(root_handlers):
            logging.getLogger().removeHandler(handler)
            handler.close()
    out, err = capsys.readouterr()
    assert code == 0, err
    assert len(out.splitlines()) == 1 and os.path.exists(out.strip())
    assert "warning: history: 1 image file(s) are gone and are marked missing" in err.splitlines()
    assert set(RUNTIME.iterdir()) == before  # no socket, pid file or folder
    wait_for(lambda: not [t for t in threading.enumerate() if t.name.startswith("sdtui-")],
             "the server's threads to end", timeout=5)
    assert [r[3] for r in history_rows(sdtui_home)] == ["done", "done"]


def test_without_the_server_a_running_server_of_the_same_home_is_left_alone(warm_server):
    from tui.wire.place import socket_path

    state = server_state(warm_server)
    inode = os.stat(socket_path(warm_server.resolve())).st_ino
    result = run_sdtui(["generate", "x", "--demo", "--no-server", *SMALL], env_extra=OFFLINE)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("loading demo model")  # in this process, not the server's loaded one
    assert "using the server's loaded model" not in result.stderr and said(result.stderr) == []
    after = server_state(warm_server)
    assert (after["pid"], after["finished_jobs"], after["clients"]) == (state["pid"], state["finished_jobs"], state["clients"])
    assert os.stat(socket_path(warm_server.resolve())).st_ino == inode
    assert [r[3] for r in history_rows(warm_server)] == ["done", "done"]


def generating_without_the_server(steps: int, size: int) -> subprocess.Popen:
    """``sdtui generate --no-server`` running, once its progress shows the first step."""
    process = subprocess.Popen(sdtui_command() + ["generate", "x", "--demo", "--no-server", "--steps", str(steps),
                                                  "--width", str(size), "--height", str(size)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    while f"/{steps}" not in seen:
        char = process.stderr.read(1)
        assert char, seen
        seen += char
    return process


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_without_the_server_a_signal_cancels_the_job_even_a_hang_up(sdtui_home, signum):
    """Its job cannot outlive the command, so a hang-up cancels it as Ctrl-C does."""
    process = generating_without_the_server(LONG, 64)
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, err
    assert out == "" and "cancelled after 0 images" in err
    assert [r[3] for r in history_rows(sdtui_home)] == ["cancelled"]


def test_without_the_server_a_second_ctrl_c_quits_at_once(sdtui_home):
    """The model runs on a thread of the command's process: leaving must not wait for its step, nor
    abort under it."""
    process = generating_without_the_server(200, 512)  # steps of seconds
    process.send_signal(signal.SIGINT)
    time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert out == "" and err.splitlines()[-1] == "sdtui: stopped", err


def test_without_the_server_every_engine_flag_reaches_the_engine_and_verbose_keeps_false_warnings_out(sdtui_home):
    result = run_sdtui(["generate", "a fox " * 40, "--demo", "--no-server", "-v", "--vae-tiling", "on", *SMALL])
    assert result.returncode == 0, result.stderr
    assert "INFO tui.engine: VAE tiling: on" in result.stderr
    assert "prompt: 160 tokens in 3 chunks of 75" in result.stderr  # a long prompt, read whole
    assert "Token indices sequence length" not in result.stderr and "indexing errors" not in result.stderr
