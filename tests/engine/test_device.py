"""Every Apple Silicon decision is a pure function of facts, so it is tested here without a Mac."""

import os
import subprocess
import sys

import pytest

from tui.engine import device as d
from tui.engine.families import SD1, SDXL

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


@pytest.mark.parametrize("setting,family,expected,words", [
    ("auto", SDXL, False, "diffusers issues 11229, 14438"),
    ("auto", SD1, True, "under 64 GiB"),
    ("on", SDXL, True, "black (NaN) images"),  # the user's word stands, with the warning
    ("off", SDXL, False, "set by the user"),
])
def test_no_attention_slicing_for_sdxl_on_mps(setting, family, expected, words):
    decision = d.choose_attention_slicing(setting, "mps", 16 * GIB, family)
    assert decision.value is expected and words in decision.reason
    assert d.choose_attention_slicing("auto", "cuda", 16 * GIB, SDXL).value is False


@pytest.mark.parametrize("ratio,limit,unlimited,words", [
    (None, int(16 * GIB * 1.7), False, "default"),
    ("1.0", 16 * GIB, False, "set"),
    ("0.0", None, True, "PYTORCH_MPS_HIGH_WATERMARK_RATIO=0"),
    ("banana", int(16 * GIB * 1.7), False, "1.7"),
])
def test_the_mps_allocator_limit_follows_the_watermark(ratio, limit, unlimited, words):
    found = d.mps_memory_limit(16 * GIB, ratio)
    assert (found.limit, found.unlimited) == (limit, unlimited) and words in found.text


def test_the_swap_warning_names_the_watermark_on_mps_only():
    assert "unset it" in d.swap_advice("mps", "0.0")
    assert "PYTORCH_MPS_HIGH_WATERMARK_RATIO (default 1.7)" in d.swap_advice("mps", None)
    assert d.swap_advice("cuda", "0.0") == "" and d.swap_advice("cpu", None) == ""


@pytest.mark.parametrize("device,version,family,warns", [
    ("mps", "2.5.1", SDXL, True), ("mps", "2.5.0", SDXL, True), ("mps", "2.6.0", SDXL, False),
    ("mps", "2.4.1", SDXL, False), ("mps", "2.5.1", SD1, False), ("cuda", "2.5.1", SDXL, False),
])
def test_torch_2_5_warns_once_for_sdxl_on_mps(device, version, family, warns):
    warning = d.mps_torch_warning(device, version, family)
    assert (warning is not None) == warns
    if warns:
        assert "pytorch issue 139389" in warning


def test_mps_work_stays_on_the_loading_thread():
    assert d.wrong_thread("mps", 1, 2) and not d.wrong_thread("mps", 1, 1)
    assert not d.wrong_thread("cuda", 1, 2) and not d.wrong_thread("mps", None, 2)


def test_a_black_float16_decode_is_redone_in_float32():
    assert d.needs_float32_decode("float16", 0)
    assert not d.needs_float32_decode("float16", 3) and not d.needs_float32_decode("float32", 0)


def test_machine_description_for_comparing_results():
    mac = d.describe_machine("mps", "2.13.0", "Darwin", "24.1.0", "15.1", "", "Apple M2 Pro")
    assert mac == {"torch": "2.13.0", "os": "macOS 15.1", "chip": "Apple M2 Pro"}
    box = d.describe_machine("cuda", "2.13.0+cu128", "Linux", "6.8.0", "", "NVIDIA H100 80GB HBM3", "AMD EPYC")
    assert box == {"torch": "2.13.0+cu128", "os": "Linux 6.8.0", "chip": "NVIDIA H100 80GB HBM3"}
    here = d.machine_facts("cpu")
    assert here["torch"] and here["os"].startswith("Linux") and here["chip"] != ""
