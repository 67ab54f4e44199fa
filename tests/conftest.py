import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

# Library progress bars and telemetry off for the whole test run, and never the network.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# sdtui servers that tests start (each test's SDTUI_HOME gets its own) live in a folder of this run
# and leave soon after their last client; each test stops the ones it started.
RUNTIME = Path(tempfile.mkdtemp(prefix="sdtui-run-"))
os.environ["XDG_RUNTIME_DIR"] = str(RUNTIME)
os.environ["SDTUI_IDLE_EXIT"] = "60s"


def stop_servers() -> list[int]:
    """SIGTERM every server started in this run that still runs; returns their pids."""
    import signal

    stopped = []
    for pid_file in RUNTIME.glob("sdtui-*/pid"):
        try:
            pid = int(pid_file.read_text())
            if pid == os.getpid():
                continue  # a server a test ran inside this process stops with its test
            os.kill(pid, signal.SIGTERM)
            stopped.append(pid)
        except (OSError, ValueError):
            pass
    for pid in stopped:
        for _ in range(200):  # up to 10 s each for the server to finish its step and leave
            try:
                os.waitpid(pid, os.WNOHANG)  # an app in this process started it: reaped, it is gone, not a zombie
            except ChildProcessError:
                pass
            if process_ended(pid):
                break
            time.sleep(0.05)
    return stopped


def process_ended(pid: int) -> bool:
    """Whether ``pid`` has ended: gone, or a zombie (a server whose starter has exited belongs to
    init, which reaps it in its own time, a second or more in this VM)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:  # gone since
        return True


def pytest_sessionfinish(session, exitstatus):
    stop_servers()
    shutil.rmtree(RUNTIME, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_server_outlives_its_test():
    yield
    stop_servers()


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true",
                     help="run the soak and kill loops at full size (500 generations, 20 kill rounds)")


@pytest.fixture
def full(request) -> bool:
    return request.config.getoption("--full")


@pytest.fixture
def sdtui_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("SDTUI_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def demo_engine():
    from tui.engine import Engine, EngineOptions

    engine = Engine(EngineOptions(model="demo", preview_max_fps=0))
    engine.load()
    return engine


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory, demo_engine):
    """The demo pipeline saved as a diffusers folder (safetensors), for from_pretrained tests."""
    folder = tmp_path_factory.mktemp("tiny-sd")
    from tui.engine.demo import build_demo_pipeline

    build_demo_pipeline().save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory):
    """A tiny random-weight SDXL pipeline saved as a diffusers folder."""
    from tests.tiny_models import build_tiny_sdxl

    folder = tmp_path_factory.mktemp("tiny-sdxl")
    build_tiny_sdxl().save_pretrained(folder)
    return folder


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache in a temp folder, with the Hub switched off."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@contextmanager
def demo_serving(home: Path):
    """The real sdtui server and engine (the demo model until a job asks for another) for the sdtui
    home ``home``, on a thread of this process: ``sdtui generate`` connects to it as to ``sdtui
    serve``, without a new process importing torch and diffusers (5 to 8 s here). For tests of what
    the command line says, not of the server's process (its start, signals, log file). Like ``sdtui
    serve``, it reads the home's config.toml when it starts."""
    from tests.scripted_engine import serving
    from tui.engine import Engine, EngineOptions

    with serving(home, engine=Engine(EngineOptions(model="demo"))) as host:
        yield host


@pytest.fixture
def demo_server(sdtui_home, monkeypatch):
    """``demo_serving`` for this test's home, with the Hub switched off."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # what the engine's advice reads, and the commands' own
    with demo_serving(sdtui_home) as host:
        yield host


def hub_settings(monkeypatch, cache, offline: str) -> None:
    """HF_HUB_CACHE and HF_HUB_OFFLINE for the command and for the server on a thread of this
    process, as a server process started with them would see them: the engine reads the
    environment when it loads, huggingface_hub the constants it set when first imported."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", bool(offline))


def hub_online(monkeypatch) -> None:
    """The Hub switched on for this test: huggingface_hub reads HF_HUB_OFFLINE once, when first
    imported, which an earlier test of this process may have done with it set."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def sdtui_command() -> list[str]:
    """The installed console script, as a user runs it."""
    script = shutil.which("sdtui", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    assert script, "the sdtui console script is not installed (pip install -e '.[test]')"
    return [script]


def run_sdtui(args, env_extra=None, timeout=120, cwd=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(sdtui_command() + list(args), capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=cwd)


@pytest.fixture
def made_before(sdtui_home):
    """One finished image and its row, saved before the bad input: what must not be lost."""
    from PIL import Image

    from tests.reliability import digest, history_rows
    from tui.engine.request import GenerationRequest
    from tui.locations import locations
    from tui.store.history import History, HistoryEntry

    places = locations()
    history = History(places.history_db, places.outputs_dir)
    request = GenerationRequest("made before", seed=5, width=64, height=64, steps=1)
    history.save_image(Image.effect_noise((64, 64), 40).convert("RGB"), request, 5, 0,
                       HistoryEntry.for_request(request, "done"))
    history.close()
    rows = history_rows(sdtui_home)
    assert len(rows) == 1
    return rows, {r[4]: digest(r[4]) for r in rows}
