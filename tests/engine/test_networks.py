"""LoRAs and textual-inversion embeddings: A1111's tag syntax, the files' families and hashes, and
real LoRAs (made here with peft, in kohya's and diffusers' layouts) changing real images."""

import hashlib
import json
import sqlite3

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.conftest import run_sdtui
from tests.tiny_models import build_tiny_sdxl, save_tiny_embedding, save_tiny_lora
from tui.engine import Engine, EngineOptions, Failed, GenerationRequest
from tui.engine.networks import (EMBEDDINGS, LORAS, LoraUse, NetworkError, extract_loras, format_hashes,
                                 network_files, parse_hashes, short_hash)
from tui.engine.request import InvalidRequest, validate_request

SMALL = dict(width=64, height=64, steps=3)


@pytest.mark.parametrize("prompt,text,loras", [
    ("a fox <lora:ink:0.8>", "a fox ", [LoraUse("ink", 0.8)]),
    ("<lora:ink>a fox", "a fox", [LoraUse("ink", 1.0)]),
    ("a <lora:My Style v2:-0.5> fox, <LYCO:old:1.2>", "a  fox, ", [LoraUse("My Style v2", -0.5),
                                                                 LoraUse("old", 1.2)]),
    ("<lora:ink:0.3> <lora:ink:0.9>", " ", [LoraUse("ink", 0.9)]),  # the last weight of a name counts
    # A1111's second weight is the UNet's, the first then the text encoders' alone; named too.
    ("<lora:ink:0.5:0.2> x", " x", [LoraUse("ink", 0.5, 0.2)]),
    ("<lora:ink:unet=0.2:te=0.5>", "", [LoraUse("ink", 0.5, 0.2)]),
    ("<lora:ink:0.7:unet=0.7>", "", [LoraUse("ink", 0.7)]),
    ("<lora:ink:unet=0>", "", [LoraUse("ink", 1.0, 0.0)]),
    ("<lora:ink:0.6:0.6:8>", "", [LoraUse("ink", 0.6)]),
    ("no tags, <not:a tag>", "no tags, <not:a tag>", []),
])
def test_lora_tags_are_taken_out_of_the_prompt_with_their_weights(prompt, text, loras):
    found = extract_loras(prompt)
    assert found.text == text and list(found.loras) == loras


def test_a_tag_that_cannot_be_read_is_one_sentence_naming_the_prompt():
    with pytest.raises(InvalidRequest) as error:
        validate_request({"prompt": "a fox <lora:ink:strong>"})
    assert str(error.value) == "prompt: <lora:ink:strong> has the weight 'strong'; use a number such as 0.8"
    with pytest.raises(NetworkError, match="names no file"):
        extract_loras("<lora::1>")
    assert extract_loras("a <hypernet:x:1> fox").ignored == \
        ("<hypernet:x:1>: hypernetworks are not supported; the tag is ignored",)
    assert extract_loras("<lora:ink:1:dyn=8>").ignored == \
        ("<lora:ink:1:dyn=8>: dyn (a DyLoRA's rank) is not supported; the LoRA is used whole",)
    with pytest.raises(NetworkError) as error:
        extract_loras("<lora:ink:strength=1>")
    assert str(error.value) == "prompt: <lora:ink:strength=1> names 'strength'; a LoRA takes te=, unet= and dyn="
    with pytest.raises(NetworkError, match="has the weight 'x'"):
        extract_loras("<lora:ink:1:unet=x>")


def _file(path, tensors, metadata=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.zeros(shape) for k, shape in tensors.items()}, str(path), metadata=metadata)
    return path


def test_families_are_read_from_the_shapes_in_the_header(tmp_path):
    loras, embeddings = tmp_path / LORAS, tmp_path / EMBEDDINGS
    _file(loras / "sd15.safetensors", {
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": (4, 768)})
    _file(loras / "xl.safetensors", {
        "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": (8, 2048)})
    _file(loras / "sub" / "sd2.safetensors", {
        "lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_k.lora_down.weight": (4, 1024)})
    _file(loras / "xl-text.safetensors", {"lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight":
                                          (4, 1280)})
    _file(loras / "odd.safetensors", {"something": (2,)})
    (loras / "old.pt").write_bytes(b"pickle")
    (loras / "notes.txt").write_text("not a model")
    found = {f.name: (f.family, f.width, f.problem) for f in network_files(loras, LORAS)}
    assert found["sd15"] == ("SD 1.x", 768, "") and found["xl"] == ("SDXL", 2048, "")
    assert found["sd2"] == ("SD 2.x", 1024, "") and found["xl-text"] == ("SDXL", None, "")
    assert found["odd"] == ("", None, "") and "notes" not in found
    assert "pickle file, which can run code" in found["old"][2]
    assert {f.name: f.problem for f in network_files(loras, LORAS, allow_pickle=True)}["old"] == ""
    _file(embeddings / "neg.safetensors", {"emb_params": (2, 768)})
    _file(embeddings / "negxl.safetensors", {"clip_l": (2, 768), "clip_g": (2, 1280)})
    families = {f.name: f.family for f in network_files(embeddings, EMBEDDINGS)}
    assert families == {"neg": "SD 1.x", "negxl": "SDXL"}


def test_hashes_are_a1111s_short_sha256_and_the_lora_hash_ignores_the_header(tmp_path):
    first = _file(tmp_path / "a.safetensors", {"w": (3, 4)}, {"ss_output_name": "one"})
    second = _file(tmp_path / "b.safetensors", {"w": (3, 4)}, {"ss_output_name": "a longer name"})
    data = first.read_bytes()
    after_header = data[8 + int.from_bytes(data[:8], "little"):]
    assert short_hash(first, skip_header=True) == hashlib.sha256(after_header).hexdigest()[:12]
    assert short_hash(first, skip_header=False) == hashlib.sha256(data).hexdigest()[:12]
    # Metadata edits change the file's hash but not the LoRA ("addnet") hash.
    assert short_hash(first, True) == short_hash(second, True)
    assert short_hash(first, False) != short_hash(second, False)
    hashes = {"ink": "0123456789ab", "My Style": "ba9876543210"}
    assert parse_hashes(format_hashes(hashes)) == hashes


@pytest.fixture(scope="module")
def models(tmp_path_factory, demo_engine):
    folder = tmp_path_factory.mktemp("models")
    save_tiny_lora(demo_engine.pipe.unet, folder / LORAS / "ink.safetensors", seed=3)
    save_tiny_lora(demo_engine.pipe.unet, folder / LORAS / "ink-diffusers.safetensors", seed=3, kohya=False)
    save_tiny_lora(demo_engine.pipe.unet, folder / LORAS / "Soft Light.safetensors", seed=8)
    save_tiny_lora(build_tiny_sdxl().unet, folder / LORAS / "xl-only.safetensors")
    for kohya, name in ((True, "ink-te"), (False, "ink-te-diffusers")):
        save_tiny_lora(demo_engine.pipe.unet, folder / LORAS / f"{name}.safetensors", seed=5, kohya=kohya,
                       text_encoder=demo_engine.pipe.text_encoder)
    save_tiny_embedding(folder / EMBEDDINGS / "BadHands.safetensors", (32,))
    save_tiny_embedding(folder / EMBEDDINGS / "xl-emb.safetensors", (32, 40))
    save_tiny_embedding(folder / EMBEDDINGS / "wide.safetensors", (32,), vectors=40)
    return folder


@pytest.fixture(scope="module")
def engine(models):
    engine = Engine(EngineOptions(model="demo", models_dir=str(models), preview_max_fps=0))
    engine.load()
    return engine


def make(engine, prompt, negative="", seed=1):
    events = []
    results = engine.generate(GenerationRequest(prompt, negative_prompt=negative, seed=seed, **SMALL), events.append)
    failed = [e for e in events if isinstance(e, Failed)]
    if failed:
        return failed[0]
    return np.asarray(results[0].image).astype(int), results[0].info


def test_a_lora_changes_the_image_by_its_weight_and_switches_off_cleanly(engine):
    unet, loads = engine.pipe.unet, engine.load_seconds
    base, info = make(engine, "a fox")
    assert "lora_hashes" not in info
    full, info = make(engine, "a fox <lora:ink:1>")
    half, _ = make(engine, "a fox <lora:ink:0.5>")
    assert info["lora_hashes"] == {"ink": short_hash(engine_models(engine) / "ink.safetensors", True)}
    assert np.abs(full - base).mean() > np.abs(half - base).mean() > 0.3
    assert np.array_equal(make(engine, "a fox <lora:ink:0>")[0], base)
    # Without the tag the image is the one from before any LoRA was loaded.
    assert np.array_equal(make(engine, "a fox")[0], base)
    # The same weights in diffusers' layout give the same image; the name matches regardless of case.
    assert np.array_equal(make(engine, "a fox <lora:INK-Diffusers:1>")[0], full)
    both, info = make(engine, "a fox <lora:ink:0.5> <lora:Soft Light:0.7>")
    assert set(info["lora_hashes"]) == {"ink", "Soft Light"} and not np.array_equal(both, half)
    assert engine.pipe.unet is unet and engine.load_seconds == loads  # switching never reloaded the model


def test_a1111s_second_weight_is_the_unets_and_the_first_the_text_encoders(engine, caplog):
    base, _ = make(engine, "a fox")
    both, _ = make(engine, "a fox <lora:ink-te:1>")
    text_only, _ = make(engine, "a fox <lora:ink-te:1:0>")
    unet_only, _ = make(engine, "a fox <lora:ink-te:0:1>")
    assert len({base.tobytes(), both.tobytes(), text_only.tobytes(), unet_only.tobytes()}) == 4
    assert np.array_equal(make(engine, "a fox <lora:ink-te:1:1>")[0], both)
    assert np.array_equal(make(engine, "a fox <lora:ink-te:unet=1:te=0>")[0], unet_only)
    assert np.array_equal(make(engine, "a fox <lora:ink-te:0:0>")[0], base)
    # kohya's file and diffusers' layout of the same weights split the same way.
    assert np.array_equal(make(engine, "a fox <lora:ink-te-diffusers:1:0>")[0], text_only)
    # A LoRA with no text-encoder part takes its UNet weight alone, and diffusers has nothing to warn of.
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert np.array_equal(make(engine, "a fox <lora:ink:0.3:0.5>")[0], make(engine, "a fox <lora:ink:0.5>")[0])
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("diffusers")]
    assert "LoRAs: ink-te (text encoder 1, UNet 0)" in _log_of(engine, caplog, "a fox <lora:ink-te:1:0>")


def _log_of(engine, caplog, prompt) -> str:
    caplog.clear()
    with caplog.at_level("INFO"):
        make(engine, "a fox")  # another set first, so the LoRAs are set again and logged
        make(engine, prompt)
    return "\n".join(r.getMessage() for r in caplog.records)


def engine_models(engine):
    from pathlib import Path

    return Path(engine.options.models_dir) / LORAS


def test_a_lora_of_another_family_or_name_is_refused_in_one_sentence(engine):
    wrong = make(engine, "a fox <lora:xl-only:1>")
    assert isinstance(wrong, Failed)
    assert wrong.message == ("LoRA: xl-only is made for another model (cross-attention width 72); the loaded model "
                             "is SD 1.x (width 32)")
    missing = make(engine, "a fox <lora:inc:1>")
    assert missing.message == ("LoRA: no 'inc' in the loras folder (there: ink, ink-diffusers, ink-te, "
                               "ink-te-diffusers, Soft Light, xl-only)")
    assert isinstance(make(engine, "a fox <lora:ink:1>"), tuple)  # the engine goes on


def test_an_embedding_named_in_a_prompt_is_loaded_and_changes_the_image(engine):
    plain, info = make(engine, "a fox", "blurry")
    named, info = make(engine, "a fox", "badhands, blurry")  # matched as CLIP reads: regardless of case
    assert info["ti_hashes"] == {"BadHands": short_hash(engine_models(engine).parent / EMBEDDINGS /
                                                        "BadHands.safetensors", False)}
    assert np.abs(named - plain).mean() > 0.3
    # A name standing for 40 vectors counts as 40 tokens: with 36 more the prompt takes two chunks.
    from tui.engine.conditioning import prompt_arguments
    from tui.engine.families import SD1, family

    assert isinstance(make(engine, "fox " * 12 + "wide"), tuple)
    embeds = prompt_arguments(engine.pipe, family(SD1), "fox " * 12 + "wide", "").kwargs["prompt_embeds"]
    assert embeds.shape[1] == 154
    wrong = make(engine, "xl-emb fox")
    assert isinstance(wrong, Failed)
    assert wrong.message == "embedding: xl-emb is made for SDXL; the loaded model is SD 1.x"


def test_sdxl_loras_and_embeddings_use_both_text_encoders(tiny_sdxl_dir, models):
    engine = Engine(EngineOptions(model=str(tiny_sdxl_dir), models_dir=str(models), preview_max_fps=0))
    engine.load()
    base, _ = make(engine, "a fox")
    with_lora, info = make(engine, "a fox <lora:xl-only:1>")
    assert set(info["lora_hashes"]) == {"xl-only"} and np.abs(with_lora - base).mean() > 0.3
    embedded, info = make(engine, "a xl-emb fox")
    assert set(info["ti_hashes"]) == {"xl-emb"} and not np.array_equal(embedded, base)
    assert make(engine, "a fox <lora:ink:1>").message.startswith("LoRA: ink is made for another model")


def test_the_cli_writes_lora_hashes_into_the_png_and_the_history(sdtui_home, demo_server, models, tmp_path):
    import shutil

    shutil.copytree(models, sdtui_home / "models")
    result = run_sdtui(["generate", "a fox", "--demo", "--lora", "ink:0.6", "--lora", "Soft Light",
                        "--steps", "2", "--width", "64", "--height", "64", "--seed", "3",
                        "--output", str(tmp_path / "fox.png")])
    assert result.returncode == 0, result.stderr
    from PIL import Image

    text = Image.open(tmp_path / "fox.png").text["parameters"]
    prompt, settings = text.splitlines()[0], text.splitlines()[-1]
    assert prompt == "a fox <lora:ink:0.6> <lora:Soft Light:1>"
    ink = short_hash(models / LORAS / "ink.safetensors", True)
    soft = short_hash(models / LORAS / "Soft Light.safetensors", True)
    assert f'Lora hashes: "ink: {ink}, Soft Light: {soft}"' in settings
    row = sqlite3.connect(sdtui_home / "history.db").execute("SELECT prompt, extra FROM generations").fetchone()
    assert row[0] == prompt and json.loads(row[1]) == {"lora_hashes": {"ink": ink, "Soft Light": soft}}
    # Read back from the image: a history rebuilt from the outputs folder keeps what the image used.
    from tui.store.history import History

    (tmp_path / "outputs").mkdir()
    shutil.copy(tmp_path / "fox.png", tmp_path / "outputs" / "fox.png")
    rebuilt = History(tmp_path / "rebuilt.db", tmp_path / "outputs")
    assert rebuilt.reconcile().adopted == 1
    (adopted,) = rebuilt.recent(1)
    assert adopted.prompt == prompt and adopted.extras() == {"lora_hashes": {"ink": ink, "Soft Light": soft}}
    rebuilt.close()
    bad = run_sdtui(["generate", "a fox", "--demo", "--lora", "ink:lots"])
    assert bad.returncode == 2 and bad.stderr.strip().endswith("--lora: 'ink:lots' has the weight 'lots'; "
                                                               "use NAME or NAME:WEIGHT, such as ink:0.8")


@pytest.mark.asyncio
async def test_the_app_picker_inserts_a_lora_and_the_job_uses_it(sdtui_home, models):
    import shutil

    from textual.widgets import DataTable

    from tests.app_helpers import make_app, type_prompt, wait_for, wait_loaded
    from tui.client.screens.networks import NetworkPickerScreen

    shutil.copytree(models, sdtui_home / "models")
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_loaded(pilot, app)
        await type_prompt(pilot, "a fox")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, NetworkPickerScreen) and app.screen.items,
                       what="the LoRA list")
        table = app.screen.query_one(DataTable)
        rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
        # The demo is SD 1.x; the tiny LoRAs are made for its own odd width, so their fit is unknown.
        assert ["", "ink", "LoRA", "width 32"] == rows[[r[1] for r in rows].index("ink")][:4]
        assert {r[1]: r[2] for r in rows}["BadHands"] == "embedding"
        await pilot.press(*"soft")
        await wait_for(pilot, lambda: table.row_count == 1, what="the filter")
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, NetworkPickerScreen), what="the picker to close")
        prompt = app.main_screen.query_one("#prompt")
        assert prompt.value == "a fox <lora:Soft Light:0.8>"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.history.count() == 1 and not app.session.busy, what="the image")
        (entry,) = app.history.recent(1)
        assert entry.prompt == "a fox <lora:Soft Light:0.8>" and set(entry.extras()["lora_hashes"]) == {"Soft Light"}


def test_a_lora_missing_by_name_is_found_by_its_a1111_hash(models):
    from tui.engine.networks import lora_names_by_hash

    ink = short_hash(models / LORAS / "ink.safetensors", skip_header=True)
    prompt = "<lora:Old Ink:0.8:0.5> fox <lora:ink-te:1> <lora:gone:1> <lora:Old Ink>"
    hashes = {"Old Ink": ink.upper(), "gone": "0123456789ab", "ink-te": ink}
    renamed, notes = lora_names_by_hash(prompt, hashes, models / LORAS)
    # A name here keeps its file even when the image's hash differs; an unknown hash leaves the tag to fail.
    assert renamed == "<lora:ink:0.8:0.5> fox <lora:ink-te:1> <lora:gone:1> <lora:ink>"
    assert notes == [f"LoRA 'Old Ink' is here as 'ink' (the same hash, {ink.upper()}): the prompt now names it so"]
    assert lora_names_by_hash("a fox", hashes, models / "nowhere") == ("a fox", [])


@pytest.mark.asyncio
async def test_importing_an_image_whose_lora_has_another_name_here_uses_the_file_by_hash(sdtui_home, models, tmp_path):
    import shutil

    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from tests.app_helpers import make_recording_app, wait_for, wait_loaded

    shutil.copytree(models, sdtui_home / "models")
    ink = short_hash(models / LORAS / "ink.safetensors", skip_header=True)
    info = PngInfo()
    info.add_text("parameters", f"a fox <lora:Ink Wash v2:0.8>\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 5, "
                                f"Size: 64x64, Lora hashes: \"Ink Wash v2: {ink}\", Version: v1.10.1")
    Image.new("RGB", (64, 64)).save(tmp_path / "shared.png", pnginfo=info)
    app = make_recording_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_loaded(pilot, app)
        app.palette.import_png()
        await pilot.pause()
        app.screen.query_one("#answer").value = str(tmp_path / "shared.png")
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("Loaded A1111" in m for m in app.notified), what="the import")
        assert app.main_screen.query_one("#prompt").value == "a fox <lora:ink:0.8>"
        assert any("'Ink Wash v2' is here as 'ink'" in line for line in app.main_screen.query_one("#log").lines_written)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.history.count() == 1 and not app.session.busy, what="the image")
        assert app.history.recent(1)[0].extras()["lora_hashes"] == {"ink": ink}


@pytest.mark.parametrize("name,metadata,steps", [
    ("Qwen-Image-Lightning-8steps-V1.0", {}, 8), ("Z-Image-Turbo-4-step", {}, 4), ("lightning_8_steps", {}, 8),
    ("Hyper-SD15-12steps-CFG-lora", {}, 12), ("FLUX.1-Turbo-Alpha", {}, None), ("ink", {}, None),
    ("v1.5steps", {}, None), ("ink", {"modelspec.title": "Qwen Lightning 4 steps"}, 4),
])
def test_a_lora_that_names_its_step_count_is_read(name, metadata, steps):
    from tui.engine.networks import made_for_steps

    assert made_for_steps(name, metadata) == steps
