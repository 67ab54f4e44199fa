"""The installed ``sdtui`` command, run as a user runs it."""

import os
import re
import sqlite3

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_sdtui
from tui.store.importers import request_from_parameters
from tui.store.importers import read_request


def test_generate_writes_a_png_whose_parameters_parse_back_and_repeats_exactly(demo_server, sdtui_home, tmp_path):
    small = ["--steps", "6", "--width", "192", "--height", "128"]
    first = run_sdtui(["generate", "a red fox", "--demo", "--seed", "7", *small, "--output", str(tmp_path / "fox.png")])
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"{tmp_path / 'fox.png'}\n"
    image = Image.open(tmp_path / "fox.png")
    request = request_from_parameters(image.text["parameters"])
    assert (request.prompt, request.seed, request.steps, request.width, request.height) == ("a red fox", 7, 6, 192,
                                                                                          128)
    assert read_request(tmp_path / "fox.png") == request
    second = run_sdtui(["generate", "a red fox", "--demo", "--seed", "7", *small, "--output",
                        str(tmp_path / "fox2.png")])
    assert second.returncode == 0
    assert np.array_equal(np.asarray(image), np.asarray(Image.open(tmp_path / "fox2.png")))
    rows = sqlite3.connect(sdtui_home / "history.db").execute(
        "SELECT prompt, seed, status, image_path, model, device FROM generations ORDER BY id").fetchall()
    assert rows == [("a red fox", 7, "done", str(tmp_path / "fox.png"), "demo model (random weights)", "cpu"),
                    ("a red fox", 7, "done", str(tmp_path / "fox2.png"), "demo model (random weights)", "cpu")]


def test_progress_goes_to_stderr_without_library_noise(sdtui_home):
    """Through a server process of its own, as a user's first ``sdtui generate`` starts one."""
    result = run_sdtui(["generate", "a fox " * 40, "--demo", "--steps", "4", "--width", "128", "--height", "128",
                        "--count", "2", "--seed", "1", "--scheduler", "euler a"])
    assert result.returncode == 0, result.stderr
    paths = result.stdout.split()
    assert len(paths) == 2 and all(p.endswith(".png") for p in paths)
    assert "-1-a-fox-a-fox" in paths[0] and "-2-a-fox" in paths[1]
    err = result.stderr
    assert "loaded demo model (random weights)" in err and "4/4" in err and "it/s" in err and "RSS" in err
    assert "dropped" not in err
    # The whole prompt is read, in chunks, and the log says so.
    assert "prompt: 160 tokens in 3 chunks of 75 (A1111's rules)" in (sdtui_home / "logs" / "sdtui.log").read_text()
    for noise in ("Warning", "warn(", "Traceback", "it/s]", "%|", "torchvision", "deprecat"):
        assert noise not in err, noise


@pytest.mark.parametrize("args,field", [
    (["generate", "", "--demo"], "prompt"),
    (["generate", "   ", "--demo"], "prompt"),
    (["generate", "x", "--demo", "--width", "513"], "width"),
    (["generate", "x", "--demo", "--height", "abc"], "height"),
    (["generate", "x", "--demo", "--steps", "0"], "steps"),
    (["generate", "x", "--demo", "--guidance", "nan"], "guidance"),
    (["generate", "x", "--demo", "--seed", "-3"], "seed"),
    (["generate", "x", "--demo", "--count", "101"], "count"),
    (["generate", "x", "--demo", "--scheduler", "warp"], "scheduler"),
    (["generate", "x", "--model", "/no/such/folder"], "model"),
    (["generate", "x", "--demo", "--device", "tpu"], "--device"),
    (["generate", "x", "--demo", "--bogus"], "--bogus"),
    (["--demo", "generate", "x", "--model", "m/n"], "--model"),
])
def test_invalid_input_exits_2_with_one_line_naming_the_field(sdtui_home, args, field):
    result = run_sdtui(args, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sdtui: ") and field in lines[0]
    assert result.stdout == ""


def test_bad_config_file_exits_2_naming_file_and_key(sdtui_home):
    sdtui_home.mkdir()
    (sdtui_home / "config.toml").write_text("stepz = 4\n")
    result = run_sdtui(["generate", "x", "--demo"], timeout=60)
    assert result.returncode == 2
    assert re.fullmatch(r"sdtui: .*config\.toml: unknown key 'stepz'; known keys are .*\n", result.stderr)


def test_flags_before_the_subcommand_apply(demo_server, sdtui_home, tmp_path):
    result = run_sdtui(["--demo", "generate", "x", "--steps", "1", "--width", "64", "--height", "64"])
    assert result.returncode == 0, result.stderr


def test_help_lists_the_subcommands():
    result = run_sdtui(["--help"], timeout=60)
    assert result.returncode == 0 and "generate" in result.stdout
    sub = run_sdtui(["generate", "--help"], timeout=60)
    assert "--negative" in sub.stdout and "--allow-pickle" in sub.stdout and "--output" in sub.stdout


OUTPUT_PROBLEMS = [
    ("a file for a folder", lambda tmp: tmp / "a-file" / "out.png",
     "{tmp}/a-file is a file, not a folder, so {tmp}/a-file/out.png cannot be written"),
    ("a file deeper up", lambda tmp: tmp / "a-file" / "sub" / "out.png",
     "{tmp}/a-file is a file, not a folder, so {tmp}/a-file/sub/out.png cannot be written"),
    ("a folder", lambda tmp: tmp, "{tmp} is a folder; give a file name, such as {tmp}/image.png"),
]


@pytest.mark.parametrize("make,words", [c[1:] for c in OUTPUT_PROBLEMS], ids=[c[0] for c in OUTPUT_PROBLEMS])
def test_an_output_path_that_cannot_be_written_is_bad_input_before_any_job(sdtui_home, tmp_path, make, words):
    (tmp_path / "a-file").write_text("x")
    result = run_sdtui(["generate", "x", "--demo", "--steps", "1", "--width", "64", "--height", "64",
                        "--output", str(make(tmp_path))], timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["sdtui: --output: " + words.format(tmp=tmp_path)]
    assert not (sdtui_home / "logs" / "server.log").exists(), "a server was started for a job that cannot save"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in any folder")
def test_an_output_folder_without_write_permission_is_bad_input(sdtui_home, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = run_sdtui(["generate", "x", "--demo", "--output", str(locked / "out.png")], timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"sdtui: --output: you cannot write in the folder {locked}; choose "
                                          "another path"]


def test_a_save_that_fails_after_the_job_names_the_output_not_a_temporary_file(demo_server, sdtui_home, tmp_path):
    # A name of 240 characters is allowed; the temporary name it is written under first is too long.
    output = tmp_path / ("f" * 240 + ".png")
    result = run_sdtui(["generate", "x", "--demo", "--steps", "1", "--width", "64", "--height", "64",
                        "--output", str(output)])
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == f"sdtui: saving failed: File name too long ({output})"
    assert ".partial" not in result.stderr


def test_the_tokenizers_other_warnings_still_show(caplog):
    import logging

    from tui.engine.quiet import quiet_libraries

    quiet_libraries()
    tokenizer_log = logging.getLogger("transformers.tokenization_utils_base")
    with caplog.at_level(logging.WARNING):
        tokenizer_log.warning("Token indices sequence length is longer than the specified maximum sequence length "
                              "for this model (160 > 77). Running this sequence through the model will result in "
                              "indexing errors")
        tokenizer_log.warning("Special tokens have been added in the vocabulary")
    assert [r.getMessage() for r in caplog.records] == ["Special tokens have been added in the vocabulary"]


def test_edit_with_a_model_that_cannot_edit_names_those_that_can(demo_server, sdtui_home, tmp_path):
    Image.new("RGB", (64, 48), "navy").save(tmp_path / "harbour.png")
    result = run_sdtui(["edit", str(tmp_path / "harbour.png"), "make the sky stormy", "--demo", "--steps", "2"])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "SD 1.x models cannot edit a picture by instruction; load a model that can (" in result.stderr
    missing = run_sdtui(["edit", str(tmp_path / "nowhere.png"), "make the sky stormy", "--demo"])
    assert missing.returncode == 2 and f"IMAGE: {tmp_path / 'nowhere.png'} does not exist" in missing.stderr
