"""Every Apple Silicon decision is a pure function of facts, so it is tested here without a Mac."""

import os
import subprocess
import sys

import pytest

from tui.engine import device as d

GIB = 1024**3


@pytest.mark.parametrize("setting,mps,cuda,expected", [
    ("auto", True, True, "mps"),
    ("auto", False, True, "cuda"),
    ("auto", False, False, "cpu"),
    ("cpu", True, True, "cpu"),
    ("cuda", False, True, "cuda"),
])
def test_device_choice(setting, mps, cuda, expected):
    decision = d.choose_device(setting, mps, cuda)
    assert decision.value == expected and decision.reason


@pytest.mark.parametrize("setting,mps,cuda", [("mps", False, True), ("cuda", True, False), ("tpu", True, True)])
def test_unavailable_or_unknown_device_is_one_clear_error(setting, mps, cuda):
    with pytest.raises(d.DeviceError, match="^device: "):
        d.choose_device(setting, mps, cuda)


@pytest.mark.parametrize("setting,device,expected", [
    ("auto", "mps", "float16"), ("auto", "cuda", "float16"), ("auto", "cpu", "float32"),
    ("bfloat16", "cuda", "bfloat16"), ("float32", "mps", "float32"),
])
def test_dtype_choice(setting, device, expected):
    assert d.choose_dtype(setting, device).value == expected


@pytest.mark.parametrize("setting,device,ram_gib,expected", [
    ("auto", "mps", 8, True),
    ("auto", "mps", 16, True),
    ("auto", "mps", 63, True),
    ("auto", "mps", 64, False),
    ("auto", "mps", 128, False),
    ("auto", "cuda", 16, False),
    ("auto", "cpu", 8, False),
    ("on", "cuda", 256, True),
    ("off", "mps", 8, False),
])
def test_attention_slicing_follows_the_mps_guide(setting, device, ram_gib, expected):
    decision = d.choose_attention_slicing(setting, device, ram_gib * GIB)
    assert decision.value is expected
    assert ("user" in decision.reason) == (setting != "auto")


@pytest.mark.parametrize("setting,device,torch_version,expected", [
    ("auto", "mps", "1.13.1", True),
    ("auto", "mps", "2.0.0", False),
    ("auto", "mps", "2.13.0", False),
    ("auto", "cuda", "1.13.1", False),
    ("on", "cpu", "2.13.0+cpu", True),
    ("off", "mps", "1.12.0", False),
])
def test_warmup_only_for_old_torch_on_mps(setting, device, torch_version, expected):
    assert d.choose_warmup(setting, device, torch_version).value is expected


def test_mps_never_batches():
    assert d.choose_batch_size("mps", 8).value == 1
    assert d.choose_batch_size("cpu", 8).value == 1
    assert d.choose_batch_size("cuda", 8).value == 4
    assert d.choose_batch_size("cuda", 2).value == 2


def test_decisions_describe_themselves_with_reason():
    text = d.choose_attention_slicing("auto", "mps", 16 * GIB).describe()
    assert text.startswith("attention slicing: on (") and "16 GiB" in text


@pytest.mark.parametrize("text,expected", [("2.13.0+cpu", (2, 13)), ("1.13.1", (1, 13)),
                                           ("2.1.0a0+git12", (2, 1)), ("garbage", (0, 0))])
def test_torch_version_parsing(text, expected):
    assert d.parse_torch_version(text) == expected


def test_mps_fallback_is_set_before_torch_unless_the_user_set_it():
    code = ("import os, sys; from tui.engine.device import enable_mps_fallback; "
            "changed = enable_mps_fallback(); print(changed, os.environ['PYTORCH_ENABLE_MPS_FALLBACK'], "
            "'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "PYTORCH_ENABLE_MPS_FALLBACK"}
    fresh = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert fresh.stdout.split() == ["True", "1", "False"]
    kept = subprocess.run([sys.executable, "-c", code], env={**env, "PYTORCH_ENABLE_MPS_FALLBACK": "0"},
                          capture_output=True, text=True, check=True)
    assert kept.stdout.split() == ["False", "0", "False"]


def test_engine_load_sets_the_fallback_before_importing_torch():
    code = ("import os, sys; from tui.engine import Engine, EngineOptions; e = Engine(EngineOptions(model='demo')); "
            "e.load(); print(os.environ.get('PYTORCH_ENABLE_MPS_FALLBACK'))")
    env = {k: v for k, v in os.environ.items() if k != "PYTORCH_ENABLE_MPS_FALLBACK"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                            timeout=120)
    assert result.stdout.strip() == "1"


def test_out_of_memory_recognition():
    import torch

    assert d.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert d.is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 17 GB)"))
    assert not d.is_out_of_memory(RuntimeError("shape mismatch"))
    assert not d.is_out_of_memory(ValueError("MPS backend out of memory"))
