"""The job queue on the real engine (demo model) and a real history: cancels belong to one job."""

import sqlite3
import threading
import time
from dataclasses import replace

import pytest

from tui.engine import GenerationRequest
from tui.engine import Engine, EngineOptions
from tui.engine.events import Cancelled, Finished, Step
from tui.server.queue import GenerationService, JobDone
from tui.store.history import History

SMALL = dict(width=64, height=64, steps=4, seed=3)


class Reports:
    def __init__(self):
        self.items: list[object] = []
        self.changed = threading.Condition()

    def __call__(self, report: object) -> None:
        with self.changed:
            self.items.append(report)
            self.changed.notify_all()

    def wait(self, predicate, what: str, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        with self.changed:
            while not (found := [r for r in self.items if predicate(r)]):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}")
                self.changed.wait(left)
        return found

    def done(self, number: int) -> JobDone:
        return self.wait(lambda r: isinstance(r, JobDone) and r.number == number, f"job {number} to end")[0]


def start_service(engine, folder):
    history = History(folder / "history.db", folder / "outputs")
    reports = Reports()
    service = GenerationService(engine, history, reports)
    thread = threading.Thread(target=service.serve, daemon=True)
    thread.start()
    return service, reports, thread, history


@pytest.fixture
def service(demo_engine, tmp_path):
    service, reports, thread, history = start_service(demo_engine, tmp_path)
    yield service, reports
    service.stop()
    thread.join(30)
    assert not thread.is_alive()
    history.close()


def endings(reports: Reports) -> dict[int, list[str]]:
    """Each job's JobDone endings, in the order they came (exactly one each, when all is well)."""
    found: dict[int, list[str]] = {}
    for report in list(reports.items):
        if isinstance(report, JobDone):
            found.setdefault(report.number, []).append(report.ended)
    return found


def test_cancel_when_idle_or_after_a_job_ended_never_stops_a_later_job(service):
    service, reports = service
    assert service.cancel_load() is False and service.cancel_job(1) is False
    first = service.submit(GenerationRequest("first", **SMALL))
    assert reports.done(first).images == 1
    assert service.cancel_load() is False  # nothing loads now
    assert service.cancel_job(first) is False
    second = service.submit(GenerationRequest("second", **SMALL))
    assert reports.done(second).images == 1
    assert not [r for r in reports.items if isinstance(r, Cancelled)]


def test_cancel_job_stops_only_the_job_it_names(service):
    service, reports = service
    running = service.submit(GenerationRequest("long", **{**SMALL, "steps": 300}))
    waiting = service.submit(GenerationRequest("dropped", **SMALL))
    after = service.submit(GenerationRequest("kept", **SMALL))
    reports.wait(lambda r: isinstance(r, Step), "the long job's first step")
    assert service.cancel_job(waiting) is True  # dropped from the queue, never started
    assert service.cancel_job(running) is True
    assert reports.done(running).images == 0
    assert reports.done(after).images == 1
    finished = [r.request.prompt for r in reports.items if isinstance(r, Finished)]
    cancelled = [r.request.prompt for r in reports.items if isinstance(r, Cancelled)]
    assert finished == ["kept"] and cancelled == ["long"]
    assert [(r.ended, r.reason) for r in reports.items if isinstance(r, JobDone) and r.number == waiting] == [
        ("dropped", "cancelled before it started")]


def test_stop_of_one_service_leaves_the_shared_engine_ready_for_the_next(demo_engine, tmp_path):
    """Two services in turn on one loaded engine, as two app sessions in one process are."""
    for round_ in range(2):
        history = History(tmp_path / f"h{round_}.db", tmp_path / f"out{round_}")
        reports = Reports()
        service = GenerationService(demo_engine, history, reports)
        thread = threading.Thread(target=service.serve, daemon=True)
        thread.start()
        number = service.submit(GenerationRequest("fox", **SMALL))
        assert reports.done(number).images == 1, f"round {round_}"
        service.stop()  # with nothing running: must not leave a cancel behind
        thread.join(30)
        history.close()


def test_every_job_ends_with_exactly_one_job_done_whatever_ends_it(service, demo_engine, tmp_path):
    service, reports = service
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    with_models = replace(demo_engine.options, models_dir=str(tmp_path / "models"))
    running = service.submit(GenerationRequest("long", **{**SMALL, "steps": 300}))
    named = service.submit(GenerationRequest("cancelled while waiting", **SMALL))
    cleared = service.submit(GenerationRequest("cleared while waiting", **SMALL))
    reports.wait(lambda r: isinstance(r, Step), "the long job's first step")
    assert service.cancel_job(named) is True
    assert service.clear_queue() == 1
    assert service.cancel_job(running) is True
    reports.done(running)
    done = service.submit(GenerationRequest("done", **SMALL))
    failed = service.submit(GenerationRequest("from a broken source", init_image=str(not_an_image), strength=0.5,
                                              **SMALL))
    refused = service.submit(GenerationRequest("a fox <lora:missing:0.8>", **SMALL), options=with_models)
    assert reports.done(refused).reason == "LoRA: no 'missing' in the loras folder (it is empty)"
    assert endings(reports) == {running: ["cancelled"], named: ["dropped"], cleared: ["dropped"], done: ["done"],
                                failed: ["failed"], refused: ["refused"]}
    assert reports.done(cleared).reason == "the queue was cleared"
    assert reports.done(done).images == 1 and reports.done(failed).reason


def test_stopping_ends_the_running_and_the_waiting_jobs_and_any_job_that_comes_after(demo_engine, tmp_path):
    service, reports, thread, history = start_service(demo_engine, tmp_path)
    try:
        running = service.submit(GenerationRequest("long", **{**SMALL, "steps": 300}))
        waiting = [service.submit(GenerationRequest(f"waiting {n}", **SMALL)) for n in range(2)]
        reports.wait(lambda r: isinstance(r, Step), "the long job's first step")
        service.stop("the sdtui server stopped (a test)")
        thread.join(30)
        assert not thread.is_alive()
        late = service.submit(GenerationRequest("too late", **SMALL))
        assert endings(reports) == {running: ["stopped"], waiting[0]: ["stopped"], waiting[1]: ["stopped"],
                                    late: ["stopped"]}
        assert {r.reason for r in reports.items if isinstance(r, JobDone)} == {"the sdtui server stopped (a test)"}
        service.end_running_job()  # nothing runs: says nothing more
        assert len([r for r in reports.items if isinstance(r, JobDone)]) == 4
    finally:
        history.close()


def test_a_job_with_no_model_loaded_fails_with_its_job_done(tmp_path):
    unloaded = Engine(EngineOptions(model="demo"))
    service, reports, thread, history = start_service(unloaded, tmp_path)
    try:
        number = service.submit(GenerationRequest("fox", **SMALL))
        ended = reports.done(number)
        assert (ended.ended, ended.reason) == ("failed", "no model is loaded; switch model or use the demo model "
                                                         "first")
        assert endings(reports) == {number: ["failed"]}
    finally:
        service.stop()
        thread.join(30)
        history.close()


def test_cancelled_and_failed_rows_carry_the_model_and_device_of_the_job(service, tmp_path):
    """The history's model filter shows every job of a model, not only its finished images."""
    service, reports = service
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    cancelled = service.submit(GenerationRequest("cancelled", **{**SMALL, "steps": 300}))
    reports.wait(lambda r: isinstance(r, Step), "the long job's first step")
    service.cancel_job(cancelled)
    assert reports.done(cancelled).ended == "cancelled"
    failed = service.submit(GenerationRequest("failed", init_image=str(not_an_image), strength=0.5, **SMALL))
    assert reports.done(failed).ended == "failed"
    with sqlite3.connect(tmp_path / "history.db") as db:
        rows = db.execute("SELECT prompt, status, model, device, dtype FROM generations ORDER BY id").fetchall()
    assert rows == [("cancelled", "cancelled", "demo model (random weights)", "cpu", "float32"),
                    ("failed", "failed", "demo model (random weights)", "cpu", "float32")]
