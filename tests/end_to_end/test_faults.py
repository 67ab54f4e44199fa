"""Faults: SIGKILL at random moments, SIGHUP and SIGTERM mid-generation, out of memory,
a hundred cancels into a queue of two hundred jobs, several processes sharing one history,
and a soak. The kill loops, the cancels and the soak run short here; ``--full`` runs them at the size
docs/development.md gives (python -m pytest tests/end_to_end/test_faults.py --full), with the figures in
docs/performance.md."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bench.terminal import TerminalSession, sdtui_script, session_env, wait_ready, write_config
from tests.conftest import sdtui_command
from tests.reliability import assert_history_consistent, history_rows, start_generating
from tests.scripted_engine import serving

SMALL = ["--steps", "2", "--width", "64", "--height", "64"]


# --- SIGKILL --------------------------------------------------------------------------------

def _kill_headless_run(home: Path, rng: random.Random, run: int, generations: int) -> list[str]:
    """``sdtui generate --count N``, killed after a random number of saved images plus a
    random part of the next one (zero images: during start-up or loading). It runs in its own
    process (``--no-server``), so the kill hits the process that writes; killing the server is
    test_server's case."""
    process = subprocess.Popen(sdtui_command() + ["generate", f"killed run {run}", "--demo", "--count",
                                                  str(generations), "--seed", str(run * 1000), "--no-server",
                                                  *SMALL],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "SDTUI_HOME": str(home)})
    printed = []
    for _ in range(rng.randrange(generations)):
        line = process.stdout.readline()
        if not line:
            break
        printed.append(line.strip())
    time.sleep(rng.uniform(0, 0.1))
    process.kill()
    process.wait()
    return printed


def _kill_app(home: Path, rng: random.Random, run: int, generations: int) -> list[str]:
    """The app in a terminal with a queue of N jobs, killed the same way."""
    session = TerminalSession([sdtui_script(), "--demo"], 100, 30, session_env(home))
    try:
        wait_ready(session)
        before = len(history_rows(home)) if (home / "history.db").exists() else 0
        session.send(f"killed app run {run}".encode() + b"\r" * generations)
        target = before + rng.randrange(generations)
        deadline = time.monotonic() + 120
        while len(history_rows(home)) < target and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.1))
    finally:
        session.process.kill()
        session.process.wait()
        os.close(session.master)
    return []


def test_sigkill_at_random_moments_leaves_a_consistent_history(tmp_path, full):
    home = tmp_path / "home"
    home.mkdir()
    write_config(home, steps=2, width=64, height=64)
    rng = random.Random(7)
    rounds, generations = (20, 50) if full else (2, 20)  # short: one app and one headless run killed
    printed: list[str] = []
    for run in range(rounds):
        kill = _kill_app if run % 2 else _kill_headless_run
        printed += kill(home, rng, run, generations)
    # The server goes on with the jobs of a killed app; the history is checked once it has stopped.
    stopped = subprocess.run(sdtui_command() + ["stop"], env={**os.environ, "SDTUI_HOME": str(home)},
                             capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    counts = assert_history_consistent(home)
    rows = {r[4] for r in history_rows(home)}
    assert set(printed) <= rows, "a path printed as saved has no row"
    assert counts["done"] > 0
    print(f"\nSIGKILL x{rounds} (runs of {generations}): {counts}")


# --- SIGHUP and SIGTERM ---------------------------------------------------------------------

@pytest.mark.parametrize("signum,server", [(signal.SIGHUP, True), (signal.SIGTERM, True), (signal.SIGHUP, False)],
                         ids=["SIGHUP", "SIGTERM", "SIGHUP --no-server"])
def test_a_signal_during_a_generation_in_the_app_exits_cleanly(sdtui_home, signum, server):
    """The app leaves at once with the terminal restored; the job goes on in the server (with
    --no-server, the engine inside the app stops it at its step and records it cancelled). The
    server the app finds running has a scripted engine, 400 steps of 10 ms; --no-server runs the
    demo pipeline inside the app."""
    write_config(sdtui_home, steps=400, width=256, height=256)
    with serving(sdtui_home, step_s=0.01) if server else contextlib.nullcontext():
        _signal_during_a_generation(sdtui_home, signum, server)


def _signal_during_a_generation(sdtui_home: Path, signum: int, server: bool) -> None:
    session = TerminalSession([sdtui_script(), "--demo"] + ([] if server else ["--no-server"]), 100, 30,
                              session_env(sdtui_home))
    try:
        wait_ready(session)
        sent = session.send(b"cancelled first\r")
        session.wait_for(b"/400", sent, timeout=60)
        session.send(b"\x1b")  # cancel, so the second job is the one the signal interrupts
        deadline = time.monotonic() + 30
        while len(history_rows(sdtui_home)) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        session.send(b"\x15")
        time.sleep(0.3)
        sent = session.send(b"interrupted\r")
        session.wait_for(b"/400", sent, timeout=60)
        signalled = time.monotonic()
        session.process.send_signal(signum)
        code = session.process.wait(timeout=15)
        took = time.monotonic() - signalled
        output = session.output_since(0)
    finally:
        if session.process.poll() is None:
            session.process.kill()
        os.close(session.master)
    assert code == 128 + signum and took < 5
    assert b"Traceback" not in output
    assert output.rstrip().endswith(b"\x1b[?1049l") or b"\x1b[?1049l" in output[-200:], "the terminal was not restored"
    deadline = time.monotonic() + 60
    while len(history_rows(sdtui_home)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [r[1] + ":" + r[3] for r in history_rows(sdtui_home)] == \
        ["cancelled first:cancelled", "interrupted:done" if server else "interrupted:cancelled"]
    assert_history_consistent(sdtui_home)


def test_a_hang_up_after_the_terminal_stopped_reading_still_ends_the_app(sdtui_home):
    """A terminal that stops reading (a stalled SSH link), then hangs up: the app's writes block,
    so its orderly exit cannot finish, yet it ends, EXIT_GRACE_S after the signal, with 129."""
    import fcntl
    import select
    import struct
    import termios

    from tui.client.terminal_features import EXIT_GRACE_S

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    process = subprocess.Popen([sdtui_script(), "--demo"], stdin=slave, stdout=slave, stderr=slave,
                               env=session_env(sdtui_home), start_new_session=True, close_fds=True)
    os.close(slave)
    try:
        seen, deadline = b"", time.monotonic() + 120
        while b"demo model (random weights) \xc2\xb7 cpu" not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                seen = seen[-4096:] + os.read(master, 65536)
        assert b"\xc2\xb7 cpu" in seen, "the app never became ready"
        for columns in range(200, 260, 6):  # from here nothing is read: each size is a whole new screen
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 60, columns, 0, 0))
            time.sleep(0.2)
        signalled = time.monotonic()
        process.send_signal(signal.SIGHUP)
        code = process.wait(timeout=EXIT_GRACE_S + 20)
        took = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
        subprocess.run([sdtui_script(), "stop"], env=session_env(sdtui_home), capture_output=True, timeout=60)
    assert code == 128 + signal.SIGHUP and took < EXIT_GRACE_S + 3
    log = (sdtui_home / "logs" / "sdtui.log").read_text()
    assert "the terminal hung up; stopping" in log  # and, when the writes were stuck, "exiting anyway"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_headless_generation_cancels_records_and_exits(sdtui_home, signum):
    process, seen = start_generating("interrupted", 400, 256)
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 128 + signum
    assert "Traceback" not in err and "cancelling after this step" in seen + err
    assert [r[3] for r in history_rows(sdtui_home)] == ["cancelled"]
    assert_history_consistent(sdtui_home)


def test_a_hang_up_during_headless_generation_leaves_the_job_running(sdtui_home):
    """The terminal went away: the client leaves at once, and the server finishes the image."""
    process, _ = start_generating("outlives the terminal", 60, 128)
    process.send_signal(signal.SIGHUP)
    process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGHUP
    deadline = time.monotonic() + 120
    while [r[3] for r in history_rows(sdtui_home)] != ["done"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [r[1:4:2] for r in history_rows(sdtui_home)] == [("outlives the terminal", "done")]
    assert_history_consistent(sdtui_home)


# --- out of memory, cancels and queues (the app, headless) -----------------------------------

@pytest.mark.asyncio
async def test_out_of_memory_is_one_message_and_the_next_job_runs(sdtui_home):
    """The app's side of it, on the scripted engine; test_engine raises it inside the real UNet."""
    from tests.app_helpers import make_app, type_prompt, wait_for, wait_loaded
    from tests.scripted_engine import scripted
    from tui.client.widgets.status import StatusPanel

    app = make_app(engine=scripted(fail_at_step=1), steps=2, width=64, height=64)  # the first job only
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot, app)
        await type_prompt(pilot, "too big")
        await pilot.press("enter")
        await type_prompt(pilot, "fits")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.history.count() == 2 and not app.session.busy, what="both jobs")
        errors = [n.message for n in app._notifications if n.severity == "error"]
        assert errors == ["out of memory on cpu at 64x64; turn attention slicing on, use a smaller size or "
                          "fewer images at once"]
        assert [(e.prompt, e.status) for e in reversed(app.history.recent(2))] == [("too big", "failed"),
                                                                                  ("fits", "done")]
        assert app.main_screen.query_one(StatusPanel).state == "done"


def test_a_hundred_quick_cancels_into_a_queue_of_two_hundred_jobs_add_up(sdtui_home, full):
    """In a real terminal: Enter 200 times in one burst, then Escape 100 times, 40 ms apart,
    while the jobs (about 0.2 s each) run. Every job ends as done or cancelled, no more are
    cancelled than Escapes were pressed, and the app is left idle and answering.
    The short form queues 30 and presses Escape 15 times."""
    jobs, escapes = (200, 100) if full else (30, 15)
    write_config(sdtui_home, steps=10, width=64, height=64)
    with serving(sdtui_home, step_s=0.02):  # the server the app finds: 10 steps of 20 ms a job
        rows = _quick_cancels(sdtui_home, jobs, escapes)
    statuses = [r[3] for r in rows]
    done, cancelled = statuses.count("done"), statuses.count("cancelled")
    assert len(rows) == jobs and done + cancelled == jobs, statuses
    assert 1 <= cancelled <= escapes
    assert_history_consistent(sdtui_home)
    print(f"\n{jobs} jobs, {escapes} quick Escapes: {done} done, {cancelled} cancelled")


def _quick_cancels(sdtui_home: Path, jobs: int, escapes: int) -> list[tuple]:
    session = TerminalSession([sdtui_script(), "--demo"], 120, 40, session_env(sdtui_home))
    try:
        wait_ready(session)
        session.send(b"queued" + b"\r" * jobs)
        time.sleep(1.0)
        for _ in range(escapes):
            session.send(b"\x1b")
            time.sleep(0.04)
        deadline = time.monotonic() + 300
        while len(history_rows(sdtui_home)) < jobs and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        session.send(b"\x15")  # Ctrl+U; a binding, so it is handled after text sent with it: send it alone
        time.sleep(0.3)
        sent = session.send(b"idle?")
        session.wait_for(b"idle?", sent, timeout=10)  # still answering keys
        rows = history_rows(sdtui_home)
        assert session.process.poll() is None
    finally:
        session.close(stop_server=False)
    assert session.process.returncode == 0, "Ctrl+Q ended it normally"
    return rows


# --- several processes, one history ---------------------------------------------------------

@pytest.mark.asyncio
async def test_the_app_and_two_headless_runs_share_one_history_without_losing_a_row(sdtui_home, full):
    from tests.app_helpers import make_app, wait_for, wait_loaded

    each = 50 if full else 8
    # Same prompt and seed everywhere, so all three want the same file names at the same time.
    headless = [subprocess.Popen(sdtui_command() + ["generate", "shared", "--demo", "--seed", "9", "--count",
                                                    str(each), *SMALL], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
    app = make_app(steps=2, width=64, height=64, seed=9)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot, app)
        prompt = app.main_screen.query_one("#prompt")
        prompt.value = "shared"
        prompt.focus()
        for _ in range(each):
            await pilot.press("enter")
        await wait_for(pilot, lambda: not app.session.busy and app.session.waiting == 0, timeout=300,
                       what="the app's images")
    outputs = [p.communicate(timeout=300) for p in headless]
    assert [p.returncode for p in headless] == [0, 0], [o[1][-500:] for o in outputs]
    printed = [line for out, _ in outputs for line in out.splitlines()]
    assert len(printed) == len(set(printed)) == 2 * each, "each headless image has its own file"
    counts = assert_history_consistent(sdtui_home)
    assert counts == {"rows": 3 * each, "done": 3 * each, "adopted": 0, "partials": 0}


# --- soak -----------------------------------------------------------------------------------

def test_soak_memory_growth_after_warm_up_stays_under_50_mb(full):
    generations, warmup = (500, 50) if full else (20, 6)
    result = subprocess.run([sys.executable, "-m", "tests.soak", "--generations", str(generations),
                             "--warmup", str(warmup), "--json"], capture_output=True, text=True, timeout=1800,
                            cwd=Path(__file__).parents[2])
    assert result.stdout, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"\nsoak: {figures}")
    assert figures["done"] == generations
    assert figures["growth_mb"] < 50
