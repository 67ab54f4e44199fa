"""The scripted engine the interface tests use, behind the real server (``stand_up``) and heard by
a real client (``connect``): the events it sends and the scripts it follows, in milliseconds."""

import threading
import time

import pytest

from tests.scripted_engine import ScriptedEngine, scripted
from tests.wire_helpers import DEMO, submit
from tests.wire_helpers import events_until as events_within
from tui.client.connection import connect
from tui.locations import locations
from tui.server.host import in_process, stand_up



@pytest.fixture
def serve(sdtui_home):
    """``serve(engine)``: the real server on that engine, on a thread; stopped after the test."""
    hosts = []

    def start(engine):
        host = stand_up(locations(), engine=engine, keep_alive_s=-1, idle_exit_s=-1).start()
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        host.stop(wait_s=10)


def events_until(connection, kind, job=None, limit=10.0):
    """The scripted engine's jobs take milliseconds: 10 s is ample."""
    return events_within(connection, kind, job, limit)


def test_a_job_loads_the_demo_model_steps_with_previews_and_saves_its_image(serve, sdtui_home):
    host = serve(ScriptedEngine())
    started = time.monotonic()
    with connect(locations().data_dir, "test") as client:
        job = submit(client)
        seen = events_until(client, "JobDone", job)
    assert time.monotonic() - started < 5
    names = [m["event"] for m in seen]
    assert names.index("LoadStarted") < names.index("Loaded") < names.index("Started") < names.index("Step")
    loaded = next(m for m in seen if m["event"] == "Loaded")
    assert loaded["model"] == "demo model (random weights)" and loaded["family"] == "SD 1.x (demo)"
    assert loaded["device"] == "cpu" and loaded["setting"] == "demo"
    steps = [m for m in seen if m["event"] == "Step"]
    assert [m["step"] for m in steps] == [1, 2, 3, 4] and {m["total"] for m in steps} == {4}
    # A preview with every step but the last (the finished image replaces it), as the real engine.
    assert [bool(m.get("preview") or m.get("payload")) for m in steps] == [True, True, True, False]
    done = seen[-1]
    assert done["ended"] == "done" and done["images"] == 1
    saved = next(m for m in seen if m["event"] == "ImageSaved")
    assert saved["path"].endswith(".png")
    rows = host.history.search("")
    assert [(r.prompt, r.seed, r.status) for r in rows] == [("a fox", 1, "done")]
    assert host.engine.calls == [("load", "demo"), ("generate", "a fox")]


def test_a_cancel_stops_a_held_job_and_the_next_job_runs(serve, sdtui_home):
    engine = serve(ScriptedEngine(hold_at_step=2)).engine
    with connect(locations().data_dir, "test") as client:
        job = submit(client, "held")
        engine.wait_holding()
        client.send({"type": "cancel", "job": job})
        seen = events_until(client, "JobDone", job)
        assert [m["step"] for m in seen if m["event"] == "Step"] == [1]
        assert [m["event"] for m in seen][-2:] == ["Cancelled", "JobDone"] and seen[-1]["ended"] == "cancelled"
        after = submit(client, "after")
        assert events_until(client, "JobDone", after)[-1]["ended"] == "done"


def test_out_of_memory_at_step_three(serve, sdtui_home):
    serve(ScriptedEngine(fail_at_step=3))
    with connect(locations().data_dir, "test") as client:
        job = submit(client)
        seen = events_until(client, "JobDone", job)
    assert [m["step"] for m in seen if m["event"] == "Step"] == [1, 2]
    failed = next(m for m in seen if m["event"] == "Failed")
    assert failed["out_of_memory"] and failed["message"].startswith("out of memory on cpu at 64x64")
    assert seen[-1]["ended"] == "failed" and seen[-1]["reason"] == failed["message"]


def test_a_download_held_at_40_percent_can_be_cancelled_and_a_failing_load_keeps_the_model(serve, sdtui_home):
    engine = serve(ScriptedEngine(download=0.4, load_errors={"owner/broken": "model: owner/broken is broken"})).engine
    with connect(locations().data_dir, "test") as client:
        events_until(client, "JobDone", submit(client))
        engine.hold_download = True
        job = submit(client, options={**DEMO, "model": "owner/big"})
        engine.wait_holding()
        client.send({"type": "cancel", "job": job})
        seen = events_until(client, "JobDone", job)
        progress = [m for m in seen if m["event"] == "DownloadProgress"]
        assert [(m["model"], m["done_bytes"] / m["total_bytes"]) for m in progress] == [("owner/big", 0.4)]
        assert seen[-1]["ended"] == "failed" and "downloading owner/big was cancelled" in seen[-1]["reason"]
        job = submit(client, options={**DEMO, "model": "owner/broken"})
        seen = events_until(client, "JobDone", job)
        failed = next(m for m in seen if m["event"] == "LoadFailed")
        assert failed["message"] == "model: owner/broken is broken" and failed["kept"] == "demo"
        assert engine.loaded_model == "demo"


def test_the_app_hears_a_scripted_job_through_its_in_process_server(sdtui_home):
    factory = scripted(step_s=0.01)
    host = in_process(locations(), factory)()
    try:
        assert host.engine is factory.engine
        with connect(locations().data_dir, "test") as client:
            job = submit(client, steps=3)
            seen = events_until(client, "JobDone", job)
        assert [m["step"] for m in seen if m["event"] == "Step"] == [1, 2, 3]
    finally:
        host.stop(wait_s=10)


def test_engine_cancel_stops_the_running_job_only_and_release_lets_a_held_one_finish(sdtui_home):
    from tui.engine.events import Cancelled, Finished
    from tui.engine.request import GenerationRequest

    engine = ScriptedEngine(hold_at_step=1)
    request = GenerationRequest("x", seed=3, steps=2, width=64, height=64)

    def held(events):
        thread = threading.Thread(target=engine.generate, args=(request, events.append))
        thread.start()
        engine.wait_holding()
        return thread

    events = []
    thread = held(events)
    assert engine.cancel()
    thread.join(5)
    assert isinstance(events[-1], Cancelled) and not engine.cancel()
    engine.hold_at_step = 1
    events = []
    thread = held(events)
    engine.release()
    thread.join(5)
    assert isinstance(events[-1], Finished) and events[-1].image.size == (64, 64)
    same = engine.generate(GenerationRequest("y", seed=3, steps=1, width=64, height=64))[0].image
    assert same.tobytes() == events[-1].image.tobytes(), "the same seed gives the same pixels"
