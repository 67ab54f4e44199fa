"""The memory a model needs, as the model picker shows it, and its family read from disk before it
loads (so its dtype is chosen for it): pure functions of the files' headers and the family's facts."""

import numpy as np
import pytest
from safetensors.numpy import save_file

from tui.engine import device as d
from tui.engine.catalog import (GB, CatalogEntry, describe, family_on_disk, folder_weights, memory_label,
                                memory_need, weight_count)
from tui.engine.families import FLUX, SD1, SDXL, ZIMAGE, ModelFamily


def test_need_is_the_weights_at_the_run_dtype_plus_a_jobs_working_memory():
    assert memory_need(10 * 10**9, 2, 2.8) == 22.8 * GB
    assert memory_need(10 * 10**9, 4, 2.8) == 42.8 * GB  # float32 doubles the weights
    assert memory_need(10 * 10**9, 2, None) == 20 * GB


@pytest.mark.parametrize("need,total,measured,text", [
    (int(22.8 * GB), 32 * GB, True, "~23 of 32 GB"),
    (int(2.7 * GB), 8 * GB, True, "~2.7 of 8.0 GB"),
    (7 * GB, 16 * GB, False, "over ~7.0 of 16 GB"),
    (80 * GB, 32 * GB, True, "~80 of 32 GB"),  # shown, never refused
])
def test_memory_label(need, total, measured, text):
    assert memory_label(need, total, measured) == text


def test_an_entry_counts_its_familys_measured_working_memory():
    z_image = CatalogEntry("r", "Z-Image-Turbo", "hub", ModelFamily(ZIMAGE, True, 1024), 0, "", weights=10 * 10**9)
    assert z_image.memory_label("bfloat16", 32 * GB) == "~23 of 32 GB"
    assert z_image.memory_label("float32", 64 * GB) == "~43 of 64 GB"
    sdxl = CatalogEntry("r", "sdxl", "hub", ModelFamily(SDXL, False, 1024), 0, "", weights=3 * 10**9)
    assert sdxl.memory_label("float16", 16 * GB) == "over ~6.0 of 16 GB"
    assert CatalogEntry("r", "x", "hub", None, None, "").memory_label("float16", GB) == ""


def _tensor(*shape):
    return np.zeros(shape, dtype=np.float16)


def test_a_folders_weights_count_one_variant_of_each_component(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": "FluxPipeline"}')
    transformer, vae = tmp_path / "transformer", tmp_path / "vae"
    transformer.mkdir(), vae.mkdir()
    save_file({"a": _tensor(10, 10)}, str(transformer / "diffusion_pytorch_model-00001-of-00002.safetensors"))
    save_file({"b": _tensor(5)}, str(transformer / "diffusion_pytorch_model-00002-of-00002.safetensors"))
    save_file({"c": _tensor(4, 4)}, str(vae / "diffusion_pytorch_model.safetensors"))
    save_file({"c": _tensor(4, 4)}, str(vae / "diffusion_pytorch_model.fp16.safetensors"))
    (vae / "broken.safetensors").write_bytes(b"not a header")
    assert folder_weights(tmp_path) == 100 + 5 + 16
    assert family_on_disk(str(tmp_path)).base == FLUX
    assert describe(str(tmp_path)).weights == 121


def test_weight_count():
    assert weight_count([(2, 3), (4,), ()]) == 6 + 4 + 1


def test_family_on_disk_before_loading(tmp_path):
    assert family_on_disk("demo").base == SD1
    assert family_on_disk("someone/not-downloaded", cache_dir=tmp_path) is None
    folder = tmp_path / "z"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "ZImagePipeline"}')
    model = family_on_disk(str(folder))
    assert model.base == ZIMAGE
    assert d.choose_dtype("auto", "cuda", model.family, d.DtypeFacts(torch_version="2.13.0")).value == "bfloat16"
