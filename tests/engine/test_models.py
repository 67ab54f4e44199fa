"""Model sources: local folders through from_pretrained, the Hub cache, pickle refusal, offline errors."""

import shutil
import time

import numpy as np
import pytest

from tests.conftest import demo_serving, hub_settings, run_sdtui
from tests.tiny_models import hub_cache_with
from tui.engine import Engine, EngineOptions, Finished, GenerationRequest, ModelLoadError
from tui.engine.models import pickle_weights, resolve_source

SMALL = dict(width=128, height=128, steps=4, seed=9)


def test_a_local_folder_loads_through_from_pretrained_and_matches_the_demo(tiny_pipeline_dir, demo_engine):
    engine = Engine(EngineOptions(model=str(tiny_pipeline_dir)))
    events = []
    engine.load(events.append)
    assert type(engine.pipe).__name__ == "StableDiffusionPipeline"
    assert events[0].source == "folder" and engine.family == "SD 1.x"
    from_folder = engine.generate(GenerationRequest("a fox", **SMALL))
    from_memory = demo_engine.generate(GenerationRequest("a fox", **SMALL))
    assert np.array_equal(np.asarray(from_folder[0].image), np.asarray(from_memory[0].image))


@pytest.fixture
def pickle_folder(tmp_path):
    from tui.engine.demo import build_demo_pipeline

    folder = tmp_path / "pickled"
    build_demo_pipeline().save_pretrained(folder, safe_serialization=False)
    return folder


def test_pickle_weights_are_refused_by_default(pickle_folder):
    assert {p.suffix for p in pickle_weights(pickle_folder)} == {".bin"}
    engine = Engine(EngineOptions(model=str(pickle_folder)))
    with pytest.raises(ModelLoadError, match="pickle format .* --allow-pickle"):
        engine.load()
    assert not engine.loaded


def test_pickle_weights_load_when_allowed(pickle_folder):
    engine = Engine(EngineOptions(model=str(pickle_folder), allow_pickle=True))
    assert isinstance(engine.generate(GenerationRequest("x", **SMALL))[0], Finished)


@pytest.mark.parametrize("name,words", [("model.ckpt", "pickle checkpoint"), ("model.pt", "pickle checkpoint"),
                                        ("model.safetensors", "not a .safetensors file"),
                                        ("notes.txt", "not a model")])
def test_single_files_are_refused_with_a_reason(tmp_path, name, words):
    path = tmp_path / name
    path.write_bytes(b"\x80\x04not really a model")
    with pytest.raises(ModelLoadError, match=words):
        Engine(EngineOptions(model=str(path))).load()


def test_a_folder_without_model_index_is_explained(tmp_path):
    with pytest.raises(ModelLoadError, match="no model_index.json"):
        Engine(EngineOptions(model=str(tmp_path))).load()


def test_a_broken_folder_is_one_line(tiny_pipeline_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_pipeline_dir, broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"truncated")
    with pytest.raises(ModelLoadError) as caught:
        Engine(EngineOptions(model=str(broken))).load()
    assert "\n" not in str(caught.value) and str(caught.value).startswith("model: loading")


@pytest.mark.parametrize("text,kind", [("demo", "demo"), ("DEMO", "demo"), ("owner/name", "hub"),
                                       ("stable-diffusion-v1-5/stable-diffusion-v1-5", "hub")])
def test_source_resolution(text, kind):
    assert resolve_source(text).kind == kind


@pytest.mark.parametrize("text", ["", "./missing/folder", "/no/such/dir", "~/nothing-here", "a/b/c"])
def test_unusable_model_names_say_what_to_give(text):
    with pytest.raises(ModelLoadError, match="^model: .*(--model PATH|Hub id)"):
        resolve_source(text)


@pytest.mark.parametrize("offline", ["1", ""])
def test_a_cached_hub_model_loads_without_the_network(tiny_pipeline_dir, tmp_path, sdtui_home, monkeypatch,
                                                      offline):
    hub_settings(monkeypatch, hub_cache_with(tmp_path / "hub", tiny_pipeline_dir, "someone/tiny-sd"), offline)
    with demo_serving(sdtui_home):
        result = run_sdtui(["generate", "a fox", "--model", "someone/tiny-sd", "--steps", "2", "--width", "64",
                            "--height", "64", "--output", str(tmp_path / "out.png")])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "out.png")


# With the Hub off, a name in no cache is bad input (2); a Hub that cannot be reached fails the run (1).
@pytest.mark.parametrize("offline,status", [("1", 2), ("", 1)])
def test_a_missing_model_offline_says_so_in_seconds(tmp_path, sdtui_home, monkeypatch, offline, status):
    hub_settings(monkeypatch, tmp_path / "empty", offline)
    with demo_serving(sdtui_home):
        started = time.monotonic()
        result = run_sdtui(["generate", "a fox", "--model", "nobody/not-cached"])
        elapsed = time.monotonic() - started
    assert result.returncode == status
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("sdtui: model: nobody/not-cached is not in the local Hugging Face cache")
    assert "--model PATH" in last and "--demo" in last
    assert "Traceback" not in result.stderr and "Retrying" not in result.stderr
    assert elapsed < 20  # python start and imports included; the hub check itself gives up within 3 s
