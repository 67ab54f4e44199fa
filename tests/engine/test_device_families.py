"""The dtype each model family runs in, per device, macOS version, chip and torch release, and the
torch releases known to break a family on mps: pure functions of facts, tested without a Mac or a GPU."""

import pytest

from tui.engine import device as d
from tui.engine.families import (FAMILIES, FLUX, FLUX2_KLEIN, FLUX_KONTEXT, QWEN_IMAGE, SD1, SD3, SDXL, ZIMAGE,
                                 family)

SONOMA_M3 = d.DtypeFacts(macos=(14, 5), chip=3, torch_version="2.13.0")
SONOMA_M1 = d.DtypeFacts(macos=(14, 5), chip=1, torch_version="2.13.0")
VENTURA = d.DtypeFacts(macos=(13, 6), chip=2, torch_version="2.13.0")
OLD_TORCH = d.DtypeFacts(macos=(15, 0), chip=4, torch_version="2.2.2")
LINUX = d.DtypeFacts(torch_version="2.13.0+cu130")
TURING = d.DtypeFacts(torch_version="2.13.0+cu130", cuda_bf16=False)
BF16_FAMILIES = (ZIMAGE, FLUX, FLUX_KONTEXT, FLUX2_KLEIN, QWEN_IMAGE, SD3)


def dtype(setting, device, family_id, facts):
    return d.choose_dtype(setting, device, family(family_id) if family_id else None, facts)


def test_every_new_family_is_published_in_bfloat16_and_says_where_its_facts_come_from():
    for entry in FAMILIES:
        assert entry.precision.preferred == ("float16" if entry.id in (SD1, "sd2", SDXL) else "bfloat16"), entry.id
        assert entry.precision.source


@pytest.mark.parametrize("family_id", [ZIMAGE, FLUX, FLUX_KONTEXT, QWEN_IMAGE, "qwen_image_edit"])
def test_families_that_go_black_in_float16_say_so(family_id):
    assert not family(family_id).precision.float16_safe
    assert "black" in family(family_id).precision.source


@pytest.mark.parametrize("family_id,facts,expected", [
    (ZIMAGE, LINUX, "bfloat16"),
    (FLUX, LINUX, "bfloat16"),
    (SD3, LINUX, "bfloat16"),
    (SD1, LINUX, "float16"),
    (SDXL, LINUX, "float16"),
    (None, LINUX, "float16"),  # family not known yet: as before
    (FLUX2_KLEIN, TURING, "float16"),  # no bfloat16 on the GPU, float16 safe
    (QWEN_IMAGE, TURING, "float32"),  # no bfloat16, black in float16
])
def test_cuda_runs_bfloat16_families_in_bfloat16_where_the_gpu_has_it(family_id, facts, expected):
    assert dtype("auto", "cuda", family_id, facts).value == expected


@pytest.mark.parametrize("family_id,facts,expected", [
    (ZIMAGE, SONOMA_M3, "bfloat16"),
    (ZIMAGE, SONOMA_M1, "bfloat16"),
    (ZIMAGE, VENTURA, "float32"),
    (QWEN_IMAGE, VENTURA, "float32"),
    (FLUX, VENTURA, "float32"),
    (FLUX2_KLEIN, VENTURA, "float16"),
    (SD3, VENTURA, "float16"),
    (FLUX, OLD_TORCH, "float32"),
    (SDXL, SONOMA_M3, "float16"),
    (SD1, VENTURA, "float16"),
])
def test_mps_runs_bfloat16_families_in_bfloat16_from_macos_14(family_id, facts, expected):
    assert dtype("auto", "mps", family_id, facts).value == expected


def test_float32_on_mps_says_why_and_that_memory_doubles():
    reason = dtype("auto", "mps", QWEN_IMAGE, VENTURA).reason
    assert "macOS 14" in reason and "macOS 13.6" in reason and "119641" in reason
    assert "black" in reason and "ComfyUI#10751" in reason and "doubles" in reason


def test_bfloat16_on_m1_and_m2_is_said_to_be_emulated():
    assert "emulates" in dtype("auto", "mps", ZIMAGE, SONOMA_M1).reason
    assert "M1" in dtype("auto", "mps", ZIMAGE, SONOMA_M1).reason
    assert "emulates" not in dtype("auto", "mps", ZIMAGE, SONOMA_M3).reason


@pytest.mark.parametrize("family_id", [*BF16_FAMILIES, SD1, None])
def test_the_cpu_runs_float32(family_id):
    assert dtype("auto", "cpu", family_id, LINUX).value == "float32"


@pytest.mark.parametrize("setting,device,family_id,facts,warning", [
    ("float16", "mps", ZIMAGE, SONOMA_M3, "Z-Image#14"),
    ("float16", "cuda", FLUX, LINUX, "InvokeAI#7208"),
    ("bfloat16", "mps", SD1, VENTURA, "macOS 14"),
    ("bfloat16", "cuda", FLUX, TURING, "no bfloat16"),
    ("bfloat16", "cpu", FLUX, LINUX, ""),
    ("float32", "mps", QWEN_IMAGE, VENTURA, ""),
    ("float16", "mps", SD1, SONOMA_M3, ""),
])
def test_an_explicit_dtype_is_always_obeyed_with_a_warning_where_it_breaks(setting, device, family_id, facts,
                                                                          warning):
    decision = dtype(setting, device, family_id, facts)
    assert decision.value == setting and decision.reason.startswith("set by the user")
    assert (warning in decision.reason) if warning else decision.reason == "set by the user"


@pytest.mark.parametrize("text,expected", [("14.4.1", (14, 4)), ("13", (13, 0)), ("26.0", (26, 0)), ("", None)])
def test_macos_version(text, expected):
    assert d.parse_macos_version(text) == expected


@pytest.mark.parametrize("brand,expected", [("Apple M1", 1), ("Apple M2 Pro", 2), ("Apple M3 Max", 3),
                                            ("Apple M4", 4), ("Intel(R) Xeon(R) CPU", None), ("", None)])
def test_apple_chip_generation(brand, expected):
    assert d.apple_chip_generation(brand) == expected


@pytest.mark.parametrize("version,expected", [("2.4.0", (2, 4, 0)), ("2.4.1+cpu", (2, 4, 1)),
                                              ("2.5.0a0+git12", (2, 5, 0)), ("2.13", (2, 13, 0))])
def test_torch_release(version, expected):
    assert d.parse_torch_release(version) == expected


@pytest.mark.parametrize("device,version,family_id,issue", [
    ("mps", "2.4.0", FLUX, "133520"),
    ("mps", "2.4.0", FLUX_KONTEXT, "133520"),
    ("mps", "2.4.1", FLUX, None),
    ("mps", "2.3.1", FLUX, None),
    ("cuda", "2.4.0", FLUX, None),
    ("mps", "2.5.1", SDXL, "139389"),
    ("mps", "2.5.0", FLUX, None),
    ("mps", "2.4.0", ZIMAGE, None),
])
def test_known_bad_torch_releases_on_mps_per_family(device, version, family_id, issue):
    warning = d.mps_torch_warning(device, version, family_id)
    assert (warning is None) if issue is None else issue in warning


@pytest.mark.parametrize("setting,loaded,system,expected", [
    ("cpu", "mps", "Darwin", "cpu"), ("auto", "cuda", "Linux", "cuda"), ("auto", "", "Darwin", "mps"),
    ("auto", "", "Linux", "cuda"),
])
def test_the_client_expects_the_device_the_engine_will_choose(setting, loaded, system, expected):
    assert d.expected_device(setting, loaded, system) == expected


def test_facts_without_torch_read_the_installed_torch_version():
    facts = d.local_dtype_facts()
    assert d.parse_torch_version(facts.torch_version) >= (2, 2)
