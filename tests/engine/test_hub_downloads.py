"""Downloads from a Hub on 127.0.0.1 over real HTTP: exactly the files the pipeline needs (no
safety checker, fp16 where the device runs float16), a redirect to a second "CDN" server, a
proxy, two processes downloading one model at once, refs/main written last, and stale partial
files. huggingface_hub's own functions fill and read the cache as the independent check."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fake_hub import FakeCdn, FakeHub, FakeProxy
from tui.engine import Engine, EngineOptions, GenerationRequest
from tui.engine.catalog import build_catalog
from tui.engine.download import PARTIAL_SUFFIX, blob_lock, remove_stale_partials, repo_folder
from tui.engine.models import ModelLoadError, cached_snapshot, fetch_from_hub, hub_reachable

REPO = "someone/tiny-sd15"
TINY = dict(width=64, height=64, steps=2, seed=3)


@pytest.fixture(scope="module")
def sd15_layout(tmp_path_factory, tiny_pipeline_dir):
    """The tiny pipeline laid out as SD 1.5's repository is: a safety checker and a feature
    extractor in model_index.json, fp16 weights beside the full ones, and a single-file
    checkpoint at the top that the diffusers pipeline does not use."""
    import torch
    from diffusers import StableDiffusionPipeline

    folder = tmp_path_factory.mktemp("sd15-layout")
    shutil.copytree(tiny_pipeline_dir, folder, dirs_exist_ok=True)
    StableDiffusionPipeline.from_pretrained(tiny_pipeline_dir).to(torch.float16).save_pretrained(
        folder, variant="fp16")
    index = json.loads((folder / "model_index.json").read_text())
    index["safety_checker"] = ["stable_diffusion", "StableDiffusionSafetyChecker"]
    index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "safety_checker").mkdir()
    (folder / "safety_checker" / "config.json").write_text("{}")
    (folder / "safety_checker" / "model.safetensors").write_bytes(os.urandom(300_000))
    (folder / "safety_checker" / "model.fp16.safetensors").write_bytes(os.urandom(150_000))
    (folder / "feature_extractor").mkdir()
    (folder / "feature_extractor" / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True, "size": 224,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 3}))
    (folder / "v1-5-pruned-emaonly.safetensors").write_bytes(os.urandom(200_000))
    return folder


@pytest.fixture
def hub(sd15_layout, tmp_path, monkeypatch):
    from huggingface_hub.utils import close_session

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with FakeCdn() as cdn, FakeHub() as fake:
        fake.cdn = cdn
        fake.add_folder(REPO, sd15_layout)
        fake.add_folder("someone/fp16-only", _fp16_only(sd15_layout, tmp_path / "fp16-only"))
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        close_session()  # a client made before this test would keep another test's proxy settings
        yield fake
        close_session()


def _fp16_only(layout: Path, folder: Path) -> Path:
    shutil.copytree(layout, folder)
    for weights in folder.glob("*/*.safetensors"):
        if ".fp16." not in weights.name:
            weights.unlink()
    return folder


def fetched(fake: FakeHub) -> set[str]:
    return {path for path, _ in fake.requests}


def test_only_the_pipelines_files_in_one_variant_through_the_cdn(hub):
    local = fetch_from_hub(REPO, False, lambda *_: None)
    assert local.variant is None
    assert not any(p.startswith("safety_checker/") for p in fetched(hub))  # 1.2 GB of SD 1.5, never run
    assert "v1-5-pruned-emaonly.safetensors" not in fetched(hub)
    assert not any(".fp16." in p for p in fetched(hub))
    assert "unet/diffusion_pytorch_model.safetensors" in fetched(hub)
    assert "feature_extractor/preprocessor_config.json" in fetched(hub)
    assert len(hub.cdn.requests) == len([p for p in fetched(hub) if p.endswith(".safetensors")]) > 0
    engine = Engine(EngineOptions(model=REPO, preview_max_fps=0))
    engine.load()
    assert engine.generate(GenerationRequest("a red fox", **TINY))[0].image.size == (64, 64)


def test_fp16_weights_where_the_device_runs_float16(hub):
    local = fetch_from_hub(REPO, False, lambda *_: None, prefer_fp16=True)
    assert local.variant == "fp16"
    weights = {p for p in fetched(hub) if p.endswith(".safetensors")}
    assert weights and all(p.endswith(".fp16.safetensors") for p in weights)
    assert cached_snapshot(REPO, False, prefer_fp16=True).variant == "fp16"
    # A CPU at float32 loads the fp16 download too: diffusers casts the weights up.
    engine = Engine(EngineOptions(model=REPO, preview_max_fps=0, dtype="float32"))
    engine.load()
    assert engine.generate(GenerationRequest("a red fox", **TINY))[0].image.size == (64, 64)


def test_a_model_cached_by_huggingface_hub_with_the_fp16_variant_loads(hub, monkeypatch):
    """What `DiffusionPipeline.from_pretrained(..., variant="fp16")` leaves in the cache, made here
    by huggingface_hub's own snapshot_download: only .fp16.safetensors weights."""
    from huggingface_hub import scan_cache_dir, snapshot_download

    snapshot_download("someone/fp16-only", endpoint=hub.url, cache_dir=os.environ["HF_HUB_CACHE"],
                      allow_patterns=["model_index.json", "*/*.json", "*/*.txt", "*/*.fp16.safetensors"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    local = cached_snapshot("someone/fp16-only", False)
    assert local is not None and local.variant == "fp16"
    engine = Engine(EngineOptions(model="someone/fp16-only", preview_max_fps=0))
    engine.load()
    assert engine.generate(GenerationRequest("a red fox", **TINY))[0].image.size == (64, 64)
    repos = {r.repo_id: r for r in scan_cache_dir(os.environ["HF_HUB_CACHE"]).repos}
    assert "main" in next(iter(repos["someone/fp16-only"].revisions)).refs


def test_refs_main_comes_last_and_an_unfinished_download_shows_in_the_picker(hub, tmp_path):
    from huggingface_hub import scan_cache_dir

    hub.cdn.delay_per_chunk = 0.02

    def stop_mid_file(done, total):
        if done > 200_000:
            raise KeyboardInterrupt  # a user's Ctrl-C, or the power going

    with pytest.raises(KeyboardInterrupt):
        fetch_from_hub(REPO, False, stop_mid_file)
    cache = Path(os.environ["HF_HUB_CACHE"])
    repo = repo_folder(cache, REPO)
    assert not (repo / "refs" / "main").exists()
    assert list((repo / "blobs").glob("*" + PARTIAL_SUFFIX))
    info = scan_cache_dir(cache)
    assert all(not revision.refs for r in info.repos for revision in r.revisions)  # no tool takes it as main
    assert cached_snapshot(REPO, False) is None
    entry = next(e for e in build_catalog(tmp_path / "models", [], cache) if e.ref == REPO)
    assert entry.note == "unfinished download: pick it to resume"
    assert entry.size_bytes > 200_000
    hub.cdn.delay_per_chunk = 0
    fetch_from_hub(REPO, False, lambda *_: None)
    assert (repo / "refs" / "main").read_text() and not list((repo / "blobs").glob("*" + PARTIAL_SUFFIX))
    assert "unfinished" not in next(e for e in build_catalog(tmp_path / "models", [], cache) if e.ref == REPO).note


_FETCH = ("import sys\nfrom tui.engine.models import fetch_from_hub\n"
          "print(fetch_from_hub(sys.argv[1], False, lambda *_: None).folder)\n")


def test_two_processes_downloading_one_model_both_finish_and_fetch_each_file_once(hub):
    from huggingface_hub import scan_cache_dir

    hub.cdn.delay_per_chunk = 0.005
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    runs = [subprocess.Popen([sys.executable, "-c", _FETCH, REPO], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env) for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert outputs[0][0] == outputs[1][0]
    weights = [sha for sha, _ in hub.cdn.requests]
    assert len(weights) == len(set(weights))  # the second process waited on the lock, then found the file
    cache = Path(os.environ["HF_HUB_CACHE"])
    (repo,) = [r for r in scan_cache_dir(cache).repos if r.repo_id == REPO]
    (revision,) = repo.revisions
    assert "main" in revision.refs and not list(cache.rglob("*" + PARTIAL_SUFFIX))
    assert all(f.size_on_disk > 0 for f in revision.files)


def test_stale_partial_files_are_removed_unless_their_download_runs(tmp_path):
    from filelock import FileLock

    cache = tmp_path / "hub"
    blobs = repo_folder(cache, REPO) / "blobs"
    blobs.mkdir(parents=True)
    old, fresh, running = (blobs / f"{name}{PARTIAL_SUFFIX}" for name in ("aaa", "bbb", "ccc"))
    for path in (old, fresh, running):
        path.write_bytes(b"x" * 1000)
    month_ago = time.time() - 30 * 86400
    os.utime(old, (month_ago, month_ago))
    os.utime(running, (month_ago, month_ago))
    lock_path = blob_lock(cache, REPO, "ccc")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path)):
        assert remove_stale_partials(cache) == (1, 1000)
    assert not old.exists() and fresh.exists() and running.exists()


def test_the_hub_is_reached_through_the_proxy_downloads_use(hub, monkeypatch):
    """Behind a proxy only the proxy can reach the Hub: its name resolves nowhere else."""
    from huggingface_hub.utils import close_session

    with pytest.raises(OSError):
        socket.getaddrinfo("hub.invalid", 80)
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.invalid")
    close_session()
    assert not hub_reachable(REPO, timeout=2)
    with pytest.raises(ModelLoadError, match="the Hub cannot be reached"):
        fetch_from_hub(REPO, False, lambda *_: None)
    hub.cdn_base = "http://cdn.invalid"
    with FakeProxy({"hub.invalid": hub.url, "cdn.invalid": hub.cdn.url}) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "")
        close_session()
        assert hub_reachable(REPO)
        local = fetch_from_hub(REPO, False, lambda *_: None)
    assert (local.folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    hosts = {line.split()[1].split("/")[0] for line in proxy.requests}
    assert hosts == {"hub.invalid", "cdn.invalid"}


@pytest.fixture(scope="module")
def sharded_z_image(tmp_path_factory):
    """A tiny Z-Image laid out as the big repositories are: every component's weights in shards with
    their index, the same in fp16 beside them, the tokenizer's chat template in chat_template.jinja
    (transformers 5 writes it there) and a single-file copy at the top that the pipeline does not use."""
    import torch

    from tests.tiny_models import build_tiny_z_image

    folder = tmp_path_factory.mktemp("z-image-sharded")
    pipe = build_tiny_z_image()
    pipe.save_pretrained(folder, max_shard_size="300KB")
    pipe.to(torch.float16).save_pretrained(folder, max_shard_size="300KB", variant="fp16")
    (folder / "z_image_turbo_bf16.safetensors").write_bytes(os.urandom(100_000))
    return folder


def test_sharded_weights_come_with_their_index_and_the_chat_template(sharded_z_image, hub, tmp_path):
    hub.add_folder("someone/tiny-z-image", sharded_z_image)
    local = fetch_from_hub("someone/tiny-z-image", False, lambda *_: None)
    got = fetched(hub)
    shards = {p for p in got if "-of-" in p}
    assert {"transformer/diffusion_pytorch_model.safetensors.index.json",
            "vae/diffusion_pytorch_model.safetensors.index.json", "tokenizer/chat_template.jinja"} <= got
    assert len([p for p in shards if p.startswith("transformer/")]) > 1
    assert not any(".fp16." in p for p in got) and "z_image_turbo_bf16.safetensors" not in got
    assert local.variant is None
    request = GenerationRequest("a red fox", **{**TINY, "scheduler": "FlowMatch Euler"})
    engine = Engine(EngineOptions(model="someone/tiny-z-image", preview_max_fps=0))
    engine.load()
    reference = Engine(EngineOptions(model=str(sharded_z_image), preview_max_fps=0))
    reference.load()
    assert engine.generate(request)[0].image.tobytes() == reference.generate(request)[0].image.tobytes()


def test_a_download_the_disk_cannot_hold_fails_before_its_first_byte(hub, monkeypatch):
    from tui.engine import download

    monkeypatch.setattr(download, "free_bytes", lambda path: 200_000)  # less than the weights plus the margin
    with pytest.raises(ModelLoadError) as raised:
        fetch_from_hub(REPO, False, lambda *_: None)
    message = str(raised.value)
    assert message.startswith(f"model: downloading {REPO} needs ") and "free; free some space" in message
    assert "HF_HUB_CACHE" in message
    assert not any(p.endswith(".safetensors") for p in fetched(hub))
    assert download.disk_shortfall(10, 10 + download.DISK_MARGIN_BYTES) is False
    assert download.disk_shortfall(11, 10 + download.DISK_MARGIN_BYTES) is True
    assert download.disk_shortfall(0, 0) is False  # nothing left to fetch needs no room
