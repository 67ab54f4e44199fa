"""sdtui serve: the wire format, the server on a real Unix socket with the demo model and a real
SQLite history, several clients, version and user checks, stale sockets, keep_alive, a killed
server, and `sdtui generate` using the model a running server holds."""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import run_sdtui
from tests.reliability import assert_history_consistent, history_rows, start_generating
from tests.scripted_engine import ScriptedEngine
from tests.wire_helpers import DEMO, events_until, submit
from tui import __version__
from tui.engine import Engine, EngineOptions
from tui.engine.events import Step
from tui.engine.memory import sample_memory
from tui.wire.events import decode_event, encode_event
from tui.wire.protocol import MAX_LINE, FrameReader, ProtocolError, encode_frame, hello, mismatch
from tui.client.connection import NoServer, connect
from tui.wire.place import peer_uid, socket_path
from tui.server.server import Server, ServerRunning
from tui.store.history import History



# --- the wire -----------------------------------------------------------------------------

def test_frames_survive_any_split_and_carry_raw_payloads():
    preview = Image.new("RGB", (8, 6), (10, 200, 30))
    step = Step(0, 3, 20, 1.5, 0.1, 10.0, sample_memory("cpu"), preview)
    message, payload = encode_event(step, 7)
    assert len(payload) == 8 * 6 * 3 and message["preview"] == [8, 6]  # the pixels travel as the payload
    wire = encode_frame(message, payload) + encode_frame({"type": "status"})
    reader, frames = FrameReader(), []
    for i in range(0, len(wire), 5):  # five bytes at a time, as a slow socket may give them
        frames += reader.feed(wire[i:i + 5])
    assert [f[0]["type"] for f in frames] == ["event", "status"]
    again = decode_event(*frames[0])
    assert isinstance(again, Step) and again.step == 3 and again.memory == step.memory
    assert again.preview.tobytes() == preview.tobytes() and again.preview.size == (8, 6)


def test_a_finished_image_travels_whole_with_its_settings():
    from tui.engine.events import Finished, Timings
    from tui.engine.request import GenerationRequest

    image = Image.effect_noise((64, 48), 80).convert("RGB")
    request = GenerationRequest("a fox", seed=2**64 - 2, width=64, height=48)
    finished = Finished(image, 1, 2**64 - 2, request, Timings(0.1, 0.2, 0.3, 9.5, 1234), {"torch": "2.13"})
    message, payload = encode_event(finished, 4)
    assert len(payload) == 64 * 48 * 3 and message["job"] == 4
    again = decode_event(*FrameReader().feed(encode_frame(message, payload))[0])
    assert isinstance(again, Finished) and again.image.tobytes() == image.tobytes()
    assert (again.index, again.seed, again.request, again.timings, again.info) == \
        (1, 2**64 - 2, request, finished.timings, {"torch": "2.13"})


@pytest.mark.parametrize("wire,words", [
    (b"not json\n", "not valid JSON"),
    (b'{"no": "type"}\n', "has no type"),
    (b'{"type": "x", "payload": -1}\n', "size not allowed"),
    (b'{"type": "x", "payload": 999999999}\n', "size not allowed"),
    (b"x" * (MAX_LINE + 2), "too long"),
], ids=["not-json", "no-type", "negative-payload", "huge-payload", "endless-line"])
def test_bad_frames_are_refused(wire, words):
    with pytest.raises(ProtocolError, match=words):
        FrameReader().feed(wire)


def test_a_different_version_is_told_to_stop_the_server():
    assert mismatch(hello("app")) is None
    assert mismatch({**hello("app"), "sdtui": "0.0.1"}) == (
        f"this sdtui (0.0.1) and the running sdtui server ({__version__}) differ; run `sdtui stop`, then try again")
    assert mismatch({"type": "welcome", "protocol": 1, "sdtui": "0.0.1"}, from_server=True) == (
        f"this sdtui ({__version__}) and the running sdtui server (0.0.1) differ; run `sdtui stop`, then try again")


# --- the server, in this process ------------------------------------------------------------

def start_server(folder: Path, engine=None) -> tuple[Server, threading.Thread, History]:
    """A server for ``folder`` serving on a thread, on ``engine`` (else the real one, demo model)."""
    history = History(folder / "history.db", folder / "outputs")
    made = Server(folder, history, engine or Engine(EngineOptions(model="demo")), keep_alive_s=-1, idle_exit_s=-1)
    made.bind()
    thread = threading.Thread(target=made.serve_forever, daemon=True)
    thread.start()
    return made, thread, history


@contextmanager
def serving(folder: Path, engine=None):
    made, thread, history = start_server(folder, engine)
    try:
        yield made
    finally:
        made.stop()
        thread.join(timeout=30)
        history.close()


@pytest.fixture
def server(tmp_path):
    with serving(tmp_path) as made:
        yield made


def test_two_clients_see_the_same_job(server, tmp_path):
    with connect(tmp_path, "one") as one, connect(tmp_path, "two") as two:
        job = submit(one)
        seen_one = events_until(one, "JobDone", job)
        seen_two = events_until(two, "JobDone", job)
    steps = [[m["step"] for m in seen if m["event"] == "Step"] for seen in (seen_one, seen_two)]
    assert steps[0] == steps[1] == [1, 2, 3, 4]
    saved = [m for m in seen_two if m["event"] == "ImageSaved"]
    assert len(saved) == 1 and Path(saved[0]["path"]).is_file() and saved[0]["job"] == job
    assert [r[3] for r in history_rows(tmp_path)] == ["done"]


def test_a_client_that_comes_during_a_job_sees_it_where_it_is(server, tmp_path):
    with connect(tmp_path, "first") as first:
        job = submit(first, steps=200, width=128, height=128)
        events_until(first, "Step", job)
        with connect(tmp_path, "later") as later:
            assert later.welcome.running == job
            caught_up = [later.receive(timeout=10)[0] for _ in range(2)]
            assert [m["event"] for m in caught_up] == ["Started", "Step"]
            assert caught_up[1]["job"] == job and caught_up[1]["step"] >= 1
            assert later.request({"type": "cancel", "job": job}, "cancel")["ok"] is True
            events_until(later, "JobDone", job)
    assert [r[3] for r in history_rows(tmp_path)] == ["cancelled"]


def test_cancel_names_its_job_and_leaves_the_others(server, tmp_path):
    with connect(tmp_path, "one") as one:
        first = submit(one, "first", steps=30, width=128, height=128)
        second = submit(one, "second")
        third = submit(one, "third")
        assert one.request({"type": "cancel", "job": second}, "cancel")["ok"] is True
        assert one.request({"type": "cancel", "job": 999}, "cancel")["ok"] is False
        events_until(one, "JobDone", third)
    assert [(r[1], r[3]) for r in history_rows(tmp_path)] == [("first", "done"), ("third", "done")]
    assert first < second < third


def test_bad_requests_and_messages_get_one_sentence(server, tmp_path):
    with connect(tmp_path, "one") as one:
        reply = one.request({"type": "generate", "request": {"prompt": "x", "width": 100}, "options": DEMO},
                            "queued")
        assert reply["type"] == "error" and reply["message"].startswith("width: 100 is not allowed")
        assert one.request({"type": "frobnicate"}, "error")["message"] == "server: unknown message 'frobnicate'"


def test_a_client_of_another_version_or_without_hello_is_refused(server, tmp_path):
    for first in ({**hello("app"), "sdtui": "9.9.9"}, {"type": "status"}):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(socket_path(tmp_path)))
        sock.sendall(encode_frame(first))
        sock.settimeout(10)
        reply = FrameReader().feed(sock.recv(65536))[0][0]
        sock.close()
        assert reply["type"] == "refused"
    assert "run `sdtui stop`" in reply["message"] or "hello" in reply["message"]


def test_the_socket_is_private_and_the_peer_is_checked(server, tmp_path):
    path = socket_path(tmp_path)
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(path.parent.stat().st_mode & 0o777) == "0o700"
    left, right = socket.socketpair(socket.AF_UNIX)
    assert peer_uid(left) == os.getuid()
    left.close()
    right.close()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a client as another user")
def test_another_users_client_is_refused(server, tmp_path):
    path = socket_path(tmp_path)
    base_mode = path.parent.parent.stat().st_mode & 0o777
    os.chmod(path.parent.parent, 0o711)  # open the doors on purpose: the server's own check must still refuse
    os.chmod(path.parent, 0o755)
    os.chmod(path, 0o666)
    code = ("import socket, sys, json\n"
            f"s = socket.socket(socket.AF_UNIX); s.connect({str(path)!r}); s.settimeout(10)\n"
            "print(s.recv(65536).decode())\n")
    python = "/usr/bin/python3"  # this test's own Python may be in a folder the other user cannot enter
    if not os.access(python, os.X_OK):
        pytest.skip("no system Python for the other user")
    try:
        result = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30,
                                preexec_fn=lambda: os.setuid(65534))
    finally:
        os.chmod(path.parent, 0o700)
        os.chmod(path.parent.parent, base_mode)
    assert result.stdout, result.stderr
    assert json.loads(result.stdout.splitlines()[0]) == {
        "type": "refused", "message": "server: this sdtui server belongs to another user"}


def test_a_stale_socket_is_replaced_and_a_live_one_refused(tmp_path, server):
    with pytest.raises(ServerRunning, match="already running"):
        Server(tmp_path, None, None).bind()
    other = tmp_path / "other"
    stale = socket_path(other)
    stale.parent.mkdir(mode=0o700, parents=True)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(stale))  # bound and closed, never unlinked: what a killed server leaves
    dead.close()
    with pytest.raises(NoServer):
        connect(other, "probe")
    replacement = Server(other, None, None)
    replacement.bind()
    replacement._listener.close()


def test_keep_alive_zero_unloads_after_the_queue_empties(tmp_path):
    history = History(tmp_path / "history.db", tmp_path / "outputs")
    made = Server(tmp_path, history, Engine(EngineOptions(model="demo")), keep_alive_s=0, idle_exit_s=2)
    made.bind()
    thread = threading.Thread(target=made.serve_forever, daemon=True)
    thread.start()
    with connect(tmp_path, "one") as one:
        events_until(one, "JobDone", submit(one))
        deadline = time.monotonic() + 10
        while made.engine.loaded and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not made.engine.loaded
        assert one.request({"type": "status"}, "status")["model"] is None
    thread.join(timeout=15)  # no client and nothing to do for 2 s: the server leaves by itself
    assert not thread.is_alive() and not socket_path(tmp_path).exists()
    history.close()


# --- the real command: a server process, `sdtui generate`, status, stop, SIGKILL ----------------

def test_generate_uses_the_model_a_running_server_holds(sdtui_home, tmp_path):
    cold = run_sdtui(["generate", "a red fox", "--demo", "--seed", "7", "--steps", "2", "--width", "64",
                      "--height", "64", "--output", str(tmp_path / "cold.png")])
    assert cold.returncode == 0, cold.stderr
    assert "starting the sdtui server" in cold.stderr and "loading demo model" in cold.stderr
    warm = run_sdtui(["generate", "a red fox", "--demo", "--seed", "7", "--steps", "2", "--width", "64",
                      "--height", "64", "--output", str(tmp_path / "warm.png")])
    assert warm.returncode == 0, warm.stderr
    assert "using the server's loaded model" in warm.stderr and "loading demo model" not in warm.stderr
    assert (tmp_path / "cold.png").read_bytes() == (tmp_path / "warm.png").read_bytes()
    status = run_sdtui(["status"])
    assert "model: demo model (random weights) on cpu" in status.stdout and "finished: 2 jobs" in status.stdout
    assert run_sdtui(["stop"]).stdout.strip() == "the sdtui server stopped"
    assert run_sdtui(["status"]).stdout.startswith("no sdtui server is running")


def test_a_killed_server_is_reported_and_replaced_with_the_history_whole(sdtui_home):
    client, _ = start_generating("killed", 300, 256)
    os.kill(_server_pid(sdtui_home), signal.SIGKILL)
    _, err = client.communicate(timeout=30)
    assert client.returncode == 1 and "the sdtui server went away" in err and "Traceback" not in err
    again = run_sdtui(["generate", "after", "--demo", "--steps", "2", "--width", "64", "--height", "64"])
    assert again.returncode == 0 and "starting the sdtui server" in again.stderr, again.stderr
    assert [r[1] for r in history_rows(sdtui_home)] == ["after"]  # the killed job left no row, and no file
    assert_history_consistent(sdtui_home)


def _server_pid(home: Path) -> int:
    from tui.client.connection import server_pid

    pid = server_pid(home.resolve())
    assert pid, "the server wrote no pid file"
    return pid


def test_status_and_stop_without_a_server(sdtui_home):
    status = run_sdtui(["status"])
    assert status.returncode == 1  # a script can tell
    assert status.stdout == f"no sdtui server is running for {sdtui_home}\n" and status.stderr == ""
    stop = run_sdtui(["stop"])
    assert stop.returncode == 0 and stop.stdout.startswith("no sdtui server is running")


def test_status_shows_the_running_jobs_prompt_and_step_and_says_busy(server, tmp_path):
    from tui.cli.serve import describe_state
    from tui.wire.events import decode_state

    def status_lines() -> dict[str, str]:
        text = describe_state(decode_state(one.request({"type": "status"}, "status")))
        return dict(line.split(": ", 1) for line in text.splitlines()[1:])

    with connect(tmp_path, "one") as one:
        running = submit(one, "a red fox in the snow, " * 5, steps=300, width=128, height=128)
        waiting = [submit(one, f"waiting {n}") for n in range(2)]
        events_until(one, "Step", running)
        shown = status_lines()
        assert re.fullmatch(r'job 1, step \d+/300: "a red fox in the snow, a red fox in the snow, a red fox in …"',
                            shown["running"]), shown["running"]
        assert shown["waiting"] == "2 (jobs 2, 3)"
        assert shown["finished"] == "0 jobs; no job has finished yet; busy"
        assert one.request({"type": "cancel", "job": waiting[0]}, "cancel")["ok"] is True
        assert status_lines()["waiting"] == "1 (job 3)"
        assert one.request({"type": "cancel", "job": running}, "cancel")["ok"] is True
        events_until(one, "JobDone", waiting[1])
        shown = status_lines()
    assert shown["running"] == "nothing" and shown["waiting"] == "0"
    assert re.fullmatch(r"2 jobs; the queue last emptied at [\d:]+; idle \d+ s", shown["finished"]), shown
    one_job = describe_state(replace(server.state(), finished_jobs=1))
    assert "finished: 1 job;" in one_job


def test_a_stopping_server_tells_each_job_how_it_ended_before_it_says_goodbye(tmp_path):
    made, thread, history = start_server(tmp_path)
    try:
        with connect(tmp_path, "one") as one:
            running = submit(one, "running", steps=300, width=128, height=128)
            waiting = submit(one, "waiting")
            events_until(one, "Step", running)
            made.stop("a test stopped it")
            frames, deadline = [], time.monotonic() + 60
            while not frames or frames[-1].get("type") != "bye":
                frame = one.receive(timeout=deadline - time.monotonic())
                assert frame is not None, "no goodbye within 60 s"
                frames.append(frame[0])
        thread.join(timeout=30)
    finally:
        history.close()
    ends = [(m["job"], m["ended"], m["reason"]) for m in frames if m.get("event") == "JobDone"]
    said = "the sdtui server stopped (a test stopped it)"
    assert sorted(ends) == [(running, "stopped", said), (waiting, "stopped", said)]
    assert frames[-1] == {"type": "bye", "message": said}


def test_only_a_mac_gets_kept_awake():
    from tui.server.awake import awake_command

    assert awake_command("darwin", 42, "/usr/bin/caffeinate") == ["/usr/bin/caffeinate", "-i", "-w", "42"]
    assert awake_command("linux", 42, "/usr/bin/caffeinate") is None
    assert awake_command("darwin", 42, None) is None


def test_the_machine_is_kept_awake_while_jobs_run_and_let_go_after(server, tmp_path):
    """caffeinate exists only on macOS; `sleep` stands in for it to follow the process's life."""
    from tui.server.awake import KeepAwake

    server.awake = KeepAwake(["sleep", "600"])
    with connect(tmp_path, "one") as one:
        job = submit(one, steps=500, width=128, height=128)
        events_until(one, "Step", job)
        deadline = time.monotonic() + 10
        while server.awake.process is None and time.monotonic() < deadline:
            time.sleep(0.05)
        holder = server.awake.process
        assert holder is not None and holder.poll() is None
        assert one.request({"type": "status"}, "status")["keeping_awake"] is True
        assert one.request({"type": "cancel", "job": job}, "cancel")["ok"] is True
        events_until(one, "JobDone", job)
        deadline = time.monotonic() + 10
        while (server.awake.process is not None or holder.poll() is None) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert holder.poll() is not None and server.awake.process is None
        state = one.request({"type": "status"}, "status")
        assert state["keeping_awake"] is False and state["queue_emptied_at"] <= time.time()


def test_a_client_that_stops_reading_never_holds_up_the_job(tmp_path):
    """A suspended terminal's client reads nothing; its messages back up, not the generation. On the
    scripted engine: 150 steps of 20 ms, each with its preview, and a job that waited on the stalled
    client would never end."""
    def timed_job(reader) -> float:
        began = time.monotonic()
        job = submit(reader, steps=150, width=256, height=256)
        seen = events_until(reader, "JobDone", job, limit=120)
        assert [m["step"] for m in seen if m["event"] == "Step"][-1] == 150
        assert len([m for m in seen if m["event"] == "ImageSaved"]) == 1
        return time.monotonic() - began

    with serving(tmp_path, ScriptedEngine(step_s=0.02)), connect(tmp_path, "reader") as reader:
        alone = timed_job(reader)
        stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(str(socket_path(tmp_path)))
        stalled.sendall(encode_frame(hello("stalled")))
        try:
            beside_a_stalled_client = timed_job(reader)
        finally:
            stalled.close()
    assert beside_a_stalled_client < alone + 2.0, (alone, beside_a_stalled_client)


def test_a_server_of_another_version_is_refused_and_stop_still_stops_it(sdtui_home):
    """As after an upgrade: the server that runs is older than the command."""
    env = {**os.environ, "SDTUI_HOME": str(sdtui_home)}
    older = ("import tui, tui.wire.protocol as p; tui.__version__ = p.__version__ = '0.0.9'\n"
             "from tui.cli.main import main; raise SystemExit(main(['serve']))")
    import sys as _sys

    server_process = subprocess.Popen([_sys.executable, "-c", older], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, cwd=Path(__file__).parents[2])
    try:
        deadline = time.monotonic() + 60
        while not socket_path(sdtui_home.resolve()).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        refused = run_sdtui(["generate", "x", "--demo", "--steps", "1", "--width", "64", "--height", "64"])
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines()[-1] == (
            f"sdtui: this sdtui ({__version__}) and the running sdtui server (0.0.9) differ; run `sdtui stop`, "
            "then try again")
        stopped = run_sdtui(["stop"])
        assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr
        assert server_process.wait(timeout=20) == 0
    finally:
        if server_process.poll() is None:
            server_process.kill()


def test_a_model_can_be_loaded_before_any_job(server, tmp_path):
    with connect(tmp_path, "one") as one:
        assert one.request({"type": "load", "options": {"model": "demo"}}, "loading")["model"] == "demo"
        deadline = time.monotonic() + 30
        loaded = None
        while loaded is None and time.monotonic() < deadline:
            frame = one.receive(timeout=1)
            if frame and frame[0].get("event") == "Loaded":
                loaded = decode_event(*frame)
        assert loaded is not None and loaded.model == "demo model (random weights)" and loaded.family_info
        assert one.request({"type": "status"}, "status")["model"] == "demo model (random weights)"


def test_the_runtime_folder_falls_back_to_the_temp_folder_when_xdg_runtime_dir_is_gone(tmp_path, monkeypatch):
    import tempfile

    from tui.wire.place import runtime_dir

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "gone"))  # as after the login session ended
    assert runtime_dir(tmp_path).parent == Path(tempfile.gettempdir())
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert runtime_dir(tmp_path).parent == tmp_path


def test_the_session_knows_which_setting_the_server_loaded_whoever_asked(tmp_path):
    """A model loaded for another client's job is that model, not the app's setting: choosing the
    app's own model again must then load it, not say it is loaded."""
    from tui.config import Settings
    from tui.engine.events import Loaded
    from tui.locations import Locations
    from tui.client.link import arrival_of
    from tui.client.session import Session

    session = Session(Settings(model="demo"), Locations(tmp_path, tmp_path))
    try:
        loaded = Loaded("someone/other", "SD 1.x", "cpu", "float32", 1.0, (), setting="someone/other")
        session.arrive(arrival_of(*encode_event(loaded, 3)))
        session.drain()
        assert (session.model, session.loaded_ref) == ("someone/other", "someone/other")
    finally:
        session.history.close()
