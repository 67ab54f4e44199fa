"""A GGUF model chosen where the gguf package is not installed: `sdtui generate` says so in one sentence that
names the file and the command installing it, and the server goes on to the next job."""

from __future__ import annotations

import sys

import pytest

from tests.cli.test_bad_input import SMALL, assert_one_clear_line
from tests.conftest import run_sdtui

pytest.importorskip("gguf")


def test_a_gguf_model_without_the_gguf_package_is_one_sentence_and_the_next_job_runs(demo_server, sdtui_home,
                                                                                      tmp_path, monkeypatch):
    import torch

    from tests.tiny_gguf import save_gguf

    model = save_gguf({"double_blocks.0.img_attn.qkv.weight": torch.ones(192, 64)},
                      tmp_path / "flux1-dev-Q8_0.gguf", "flux", "Q8_0")
    # The server (and its engine) runs on a thread of this process: importing gguf fails there as uninstalled.
    monkeypatch.setitem(sys.modules, "gguf", None)
    result = run_sdtui(["generate", "x", "--model", str(model), *SMALL], env_extra={"HF_HUB_OFFLINE": "1"})
    last = assert_one_clear_line(result, "model: flux1-dev-Q8_0.gguf is a GGUF file, which needs the gguf package; "
                                         'install it with `pip install "sdtui[gguf]"`')
    assert last.count(";") == 1 and result.stdout == ""
    after = run_sdtui(["generate", "still here", "--demo", "--output", str(tmp_path / "after.png"), *SMALL])
    assert after.returncode == 0, after.stderr
    assert (tmp_path / "after.png").stat().st_size > 0
