"""One file of a Hub repository as the model (owner/name/file.gguf), against a Hub on 127.0.0.1: the file alone is
downloaded, then its family's base repository without its transformer weights; it loads and gives the image the
same file gives by path; once in the cache it loads with no request to the Hub and the picker describes it; a name
the Hub does not have, or one that cannot be a file, is one sentence."""

import shutil

import numpy as np
import pytest

from tests.conftest import hub_settings
from tests.fake_hub import FakeCdn, FakeHub
from tests.tiny_gguf import z_image_hub_repositories
from tests.tiny_models import hub_cache_with
from tui.engine import DownloadProgress, Engine, EngineOptions, GenerationRequest, ModelLoadError
from tui.engine.catalog import build_catalog, describe, family_on_disk
from tui.engine.hub_files import cached_hub_file
from tui.engine.models import ModelSource, resolve_source
from tui.server.queue import model_is_unknown

pytest.importorskip("gguf")

GGUF_REPO, FILE, BASE = "someone/z-image-gguf", "z_image_turbo-Q8_0.gguf", "Tongyi-MAI/Z-Image-Turbo"
REF = f"{GGUF_REPO}/{FILE}"
TINY = dict(width=32, height=32, steps=2, seed=3, scheduler="FlowMatch Euler", guidance=0.0)


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    """The Hub's two repositories as folders: "gguf", the Q8_0 file beside another quantization and a README;
    "base", a whole Z-Image-Turbo pipeline."""
    root = tmp_path_factory.mktemp("hub-files")
    z_image_hub_repositories(root, FILE)
    return root


@pytest.fixture
def hub(repos, tmp_path, monkeypatch):
    from huggingface_hub.utils import close_session

    hub_settings(monkeypatch, tmp_path / "hub", "")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with FakeCdn() as cdn, FakeHub() as fake:
        fake.cdn = cdn
        fake.add_folder(GGUF_REPO, repos / "gguf")
        fake.add_folder(BASE, repos / "base")
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        close_session()  # a client made before this test would keep another test's settings
        yield fake
        close_session()


def image_of(engine: Engine) -> np.ndarray:
    return np.asarray(engine.generate(GenerationRequest("a red fox", **TINY))[0].image).astype(int)


def test_the_file_downloads_alone_then_its_base_without_transformer_weights_and_loads_as_the_file_does(
        hub, repos, tmp_path):
    events = []
    engine = Engine(EngineOptions(model=REF, preview_max_fps=0))
    engine.load(events.append)

    assert hub.fetched(GGUF_REPO) == {FILE}
    base_files = {str(p.relative_to(repos / "base")) for p in (repos / "base").rglob("*") if p.is_file()}
    assert hub.fetched(BASE) == {f for f in base_files if not f.startswith("transformer/diffusion_pytorch_model")}
    assert "transformer/config.json" in hub.fetched(BASE)
    downloads = [e for e in events if isinstance(e, DownloadProgress)]
    assert [e.model for e in downloads] == sorted((e.model for e in downloads), key=[REF, BASE].index)
    last = {e.model: e for e in downloads}
    assert last[REF].done_bytes == last[REF].total_bytes == (repos / "gguf" / FILE).stat().st_size
    assert last[BASE].done_bytes == last[BASE].total_bytes > 0
    assert engine.loaded_model == REF and engine.quantization == "Q8_0" and engine.family == "Z-Image Turbo"
    from_hub = image_of(engine)

    path = cached_hub_file(REF)
    assert path is not None and path.read_bytes() == (repos / "gguf" / FILE).read_bytes()
    calls = len(hub.calls)
    by_path = Engine(EngineOptions(model=str(path), preview_max_fps=0))
    by_path.load()
    assert np.array_equal(image_of(by_path), from_hub)

    again = Engine(EngineOptions(model=REF, preview_max_fps=0))
    again.load()
    assert len(hub.calls) == calls  # from the cache: not even a question to the Hub

    # The picker: a recent row with its family, quantization and memory, listed once.
    entry = describe(REF)
    assert (entry.ref, entry.kind, entry.family_label, entry.quantization) == (REF, "file", "Z-Image Turbo Q8_0",
                                                                               "Q8_0")
    assert {part.name for part in entry.parts} >= {"transformer", "text_encoder", "vae"}
    assert entry.estimate("float32") is not None and family_on_disk(REF).label == "Z-Image Turbo"
    catalog = build_catalog(tmp_path / "models", [REF])
    assert [e.ref for e in catalog].count(REF) == 1 and catalog[0].ref == REF and catalog[0].recent
    assert catalog[0].family_label == "Z-Image Turbo Q8_0"


def test_a_stopped_file_download_resumes_where_it_stopped(hub, repos):
    from tui.engine.hub_files import fetch_hub_file

    hub.cdn.delay_per_chunk = 0.01

    def stop_mid_file(done, total):
        if 0 < done < total:
            raise KeyboardInterrupt  # a user's Ctrl-C, or the power going

    with pytest.raises(KeyboardInterrupt):
        fetch_hub_file(REF, stop_mid_file)
    assert cached_hub_file(REF) is None
    path = fetch_hub_file(REF, lambda *_: None)
    assert path.read_bytes() == (repos / "gguf" / FILE).read_bytes()
    ranges = [wanted for _sha, wanted in hub.cdn.requests]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"


def test_a_file_the_hub_does_not_have_is_one_sentence_and_the_loaded_model_stays(hub):
    engine = Engine(EngineOptions(model="demo", preview_max_fps=0))
    engine.load()
    for model, said in [
        (f"{GGUF_REPO}/z_image_turbo-Q5_0.gguf",
         f"model: {GGUF_REPO} on the Hub has no file z_image_turbo-Q5_0.gguf; its model files are "
         f"z_image_turbo-Q4_0.gguf, {FILE}"),
        ("someone/no-such-repo/model.safetensors",
         "model: someone/no-such-repo was not found on the Hub (or it is private and you are not logged in: "
         "`hf auth login`)"),
    ]:
        engine.options = EngineOptions(model=model, preview_max_fps=0)
        with pytest.raises(ModelLoadError) as caught:
            engine.load()
        assert str(caught.value) == said
        assert engine.loaded_model == "demo"
        assert model_is_unknown(engine.options, caught.value)  # a job asking for it is refused as bad input
    assert hub.served == []


def test_offline_a_file_not_in_the_cache_is_named_and_a_cached_one_without_its_base_names_the_base(
        repos, tmp_path, monkeypatch):
    hub_settings(monkeypatch, tmp_path / "hub", "1")
    with pytest.raises(ModelLoadError) as caught:
        Engine(EngineOptions(model=REF)).load()
    assert str(caught.value) == (f"model: {REF} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
                                 "give a local diffusers folder with --model PATH, or try the demo model with --demo")

    only_the_file = tmp_path / "only-the-file"
    only_the_file.mkdir()
    shutil.copy(repos / "gguf" / FILE, only_the_file / FILE)
    hub_cache_with(tmp_path / "hub", only_the_file, GGUF_REPO)
    with pytest.raises(ModelLoadError) as caught:
        Engine(EngineOptions(model=REF)).load()
    assert str(caught.value) == (f"model: {FILE} holds only the Z-Image transformer, and its text encoders, VAE and "
                                 f"scheduler come from {BASE}, which the local Hugging Face cache does not hold; "
                                 f"fetch them once with `hf download {BASE} --exclude 'transformer/*.safetensors'`")


@pytest.mark.parametrize("model, source", [
    (REF, ModelSource("hub_file", REF, REF)),
    ("owner/name/sub/folder/x.SAFETENSORS", ModelSource("hub_file", "owner/name/sub/folder/x.SAFETENSORS",
                                                        "owner/name/sub/folder/x.SAFETENSORS")),
    ("owner/name", ModelSource("hub", "owner/name", "owner/name")),
])
def test_a_file_of_a_hub_repository_is_a_source_of_its_own(model, source):
    assert resolve_source(model) == source


@pytest.mark.parametrize("model", ["owner/name/model.ckpt", "owner/name/../x.gguf", "owner/name/", "/owner/x/y.gguf",
                                   "owner/name/notes.txt"])
def test_what_cannot_be_a_hub_file_is_one_sentence(model):
    with pytest.raises(ModelLoadError) as caught:
        resolve_source(model)
    assert str(caught.value) == (f"model: {model!r} is neither an existing folder nor a Hub id like owner/name (or "
                                 "owner/name/FILE.safetensors or .gguf for one file of it); give --model PATH to a "
                                 "diffusers folder, or --demo")


def test_an_interrupted_file_download_is_no_model_of_its_own_in_the_picker(tmp_path, monkeypatch):
    """Its repository has no model_index.json: picking the repository could not load it; the file, picked
    again from the models to get, resumes."""
    from tui.engine.download import PARTIAL_SUFFIX, repo_folder

    hub_settings(monkeypatch, tmp_path / "hub", "1")
    blobs = repo_folder(tmp_path / "hub", GGUF_REPO) / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{'a' * 64}{PARTIAL_SUFFIX}").write_bytes(b"x" * 1000)
    assert GGUF_REPO not in {entry.ref for entry in build_catalog(tmp_path / "models", [], tmp_path / "hub")}
