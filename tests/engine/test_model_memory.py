"""The memory a model will need, known before it loads: its parts' weights from the files' headers at
the dtype it will run in, plus a job's working memory measured per family; and the verdict against
what the device may use (fits, tight, swaps), as the picker shows it and the log says it."""

import numpy as np
import pytest
from safetensors.numpy import save_file

from tui.engine import device as d
from tui.engine.catalog import describe, family_on_disk
from tui.engine.estimate import GB, Part, estimate, folder_parts, gb
from tui.engine.families import FLUX, SD1, ZIMAGE
from tui.engine.fit import (FITS, OVER, TIGHT, budget_from_sample, cpu_budget, cuda_budget, judge, memory_line,
                            mps_budget, recommended_working_set, what_fits_instead)
from tui.engine.memory import MemorySample

GIB = 1024**3
Z_IMAGE_PARTS = (Part("text_encoder", 4_020_000_000), Part("transformer", 6_150_000_000), Part("vae", 84_000_000))


def test_the_weights_count_at_the_run_dtype_and_a_jobs_working_memory_scales_with_its_pixels():
    at_native = estimate(Z_IMAGE_PARTS, "bfloat16", 2.8, 1024)
    assert at_native.weights == 2 * 10_254_000_000
    assert at_native.peak == at_native.weights + 2.8 * GB
    assert estimate(Z_IMAGE_PARTS, "float32", 2.8, 1024).weights == 2 * at_native.weights
    assert estimate(Z_IMAGE_PARTS, "bfloat16", 2.8, 1024, (512, 512)).working == int(0.7 * GB)
    assert at_native.at_size((2048, 1024)).working == int(5.6 * GB)
    assert at_native.encoders == 2 * 4_020_000_000
    assert at_native.peak_without_encoders == at_native.peak - at_native.encoders
    unmeasured = estimate(Z_IMAGE_PARTS, "bfloat16", None, 1024)
    assert unmeasured.peak == unmeasured.weights and not unmeasured.measured
    assert "not measured" in unmeasured.breakdown()
    assert at_native.breakdown() == "text encoders 7.5 GB, transformer 11 GB, VAE 0.2 GB; a 1024x1024 job 2.6 GB"


def test_quantized_weights_count_as_stored():
    quantized = (Part("transformer", 0, 6_500_000_000, "Q8_0"), Part("vae", 84_000_000))
    assert estimate(quantized, "bfloat16", 2.8, 1024).weights == 6_500_000_000 + 168_000_000
    assert estimate(quantized, "float32", 2.8, 1024).weights == 6_500_000_000 + 336_000_000
    assert estimate(quantized, "bfloat16", None, 1024).quantization == "Q8_0"
    assert "transformer (Q8_0) 6.1 GB" in estimate(quantized, "bfloat16", None, 1024).breakdown()


def _tensor(*shape, dtype=np.float16):
    return np.zeros(shape, dtype=dtype)


def test_a_folders_parts_count_one_variant_of_each_component_from_the_headers(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": "FluxPipeline"}')
    transformer, vae = tmp_path / "transformer", tmp_path / "vae"
    transformer.mkdir(), vae.mkdir()
    save_file({"a": _tensor(10, 10)}, str(transformer / "diffusion_pytorch_model-00001-of-00002.safetensors"))
    save_file({"b": _tensor(5, dtype=np.float32), "ids": _tensor(3, dtype=np.int64)},
              str(transformer / "diffusion_pytorch_model-00002-of-00002.safetensors"))
    save_file({"c": _tensor(4, 4)}, str(vae / "diffusion_pytorch_model.safetensors"))
    save_file({"c": _tensor(4, 4)}, str(vae / "diffusion_pytorch_model.fp16.safetensors"))
    (vae / "broken.safetensors").write_bytes(b"not a header")
    assert folder_parts(tmp_path) == (Part("transformer", 105, 24), Part("vae", 16))
    assert family_on_disk(str(tmp_path)).base == FLUX
    assert describe(str(tmp_path)).estimate("bfloat16").weights == 2 * 121 + 24


def test_a_whole_checkpoint_is_split_into_its_parts_by_their_prefixes(tmp_path):
    from tui.engine.catalog import scan_models_dir

    path = tmp_path / "sd15.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": _tensor(320, 4, 3, 3),
               "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": _tensor(320, 768),
               "first_stage_model.decoder.conv_in.weight": _tensor(8, 4),
               "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": _tensor(10, 768)},
              str(path))
    entry = scan_models_dir(tmp_path)[0]
    assert {part.name: part.floating for part in entry.parts} == {
        "unet": 320 * 4 * 9 + 320 * 768, "vae": 32, "text_encoder": 7680}


def test_a_macs_recommended_working_set_as_metal_gives_it():
    assert recommended_working_set(16 * GIB) == pytest.approx(10922.67 * 1024**2, rel=1e-4)
    assert recommended_working_set(32 * GIB) == pytest.approx(21845.34 * 1024**2, rel=1e-4)
    assert recommended_working_set(64 * GIB) == 48 * GIB


@pytest.mark.parametrize("need_gb,verdict,word", [(9, FITS, "fits"), (12.5, TIGHT, "tight"), (20, OVER, "swaps")])
def test_a_mac_fits_in_its_working_set_is_tight_up_to_what_others_leave_and_swaps_past_it(need_gb, verdict, word):
    budget = mps_budget(16 * GIB, others_used=2 * GIB)  # at least 4 GiB are kept for the system and apps
    assert (budget.comfortable, budget.limit) == (recommended_working_set(16 * GIB), 12 * GIB)
    fit = judge(int(need_gb * GB), budget)
    assert (fit.verdict, fit.word) == (verdict, word)


def test_the_mps_allocators_own_limit_stops_a_job_before_swap():
    budget = mps_budget(64 * GIB, 4 * GIB, allocator_limit=50 * GIB)
    fit = judge(55 * GB, budget)
    assert fit.verdict == OVER and "stop out of memory" in fit.sentence() and "WATERMARK" in fit.sentence()


def test_a_gpu_has_no_swap_and_counts_what_sdtuis_model_gives_back():
    budget = cuda_budget(free=10 * GIB, total=80 * GIB, held_by_sdtui=30 * GIB)
    assert budget.limit == 40 * GIB
    assert judge(30 * GB, budget).verdict == FITS
    assert judge(50 * GB, budget).word == "too big"
    assert "stop out of memory" in judge(50 * GB, budget).sentence()
    assert budget_from_sample("cuda", MemorySample(1, 2, 80 * GIB, 1, 1, 1, 0)) is None  # no free figure


def test_the_budget_from_the_servers_reading():
    sample = MemorySample(None, None, None, process_rss=GIB, system_used=9 * GIB, system_total=24 * GIB, swap_used=0)
    cpu = budget_from_sample("cpu", sample, held_by_sdtui=GIB)
    assert cpu.limit == 16 * GIB and cpu == cpu_budget(15 * GIB, 24 * GIB, GIB)
    mac = MemorySample(GIB, GIB, int(1.7 * 21 * GIB), process_rss=3 * GIB, system_used=12 * GIB,
                       system_total=32 * GIB, swap_used=0, device_recommended=21 * GIB)
    budget = budget_from_sample("mps", mac)
    assert (budget.comfortable, budget.limit, budget.ceiling) == (21 * GIB, 23 * GIB, int(1.7 * 21 * GIB))


def test_the_picker_label_and_the_log_line():
    budget = mps_budget(32 * GIB, 6 * GIB)
    z_image = estimate(Z_IMAGE_PARTS, "bfloat16", 2.8, 1024)
    assert judge(z_image.peak, budget).label() == "tight 22/26 GB"
    assert judge(z_image.peak_without_encoders, budget).label("+") == "fits 14+/26 GB"
    line, over = memory_line("Z-Image-Turbo", z_image, mps_budget(16 * GIB, 4 * GIB))
    assert over and line.startswith("memory: Z-Image-Turbo needs ~22 GB, more than the 12 GB the system can give it "
                                 "(11 GB recommended for the GPU of 16 GB unified memory)")
    assert "it will swap" in line and "(text encoders 7.5 GB, transformer 11 GB" in line
    line, over = memory_line("Z-Image-Turbo", z_image, mps_budget(64 * GIB, 8 * GIB))
    assert not over and "fits in 48 GB recommended for the GPU of 64 GB unified memory" in line


def test_what_fits_instead_frees_the_encoders_shrinks_the_size_or_halves_the_precision():
    flux = estimate((Part("text_encoder", 123_000_000), Part("text_encoder_2", 4_760_000_000),
                     Part("transformer", 11_900_000_000), Part("vae", 84_000_000)), "bfloat16", 2.6, 1024)
    ways = what_fits_instead(flux, mps_budget(48 * GIB, 6 * GIB))
    assert ways == []  # it fits: nothing to say
    ways = what_fits_instead(flux, mps_budget(36 * GIB, 6 * GIB), (("flux1-dev-Q8_0.gguf", 22 * GB),))
    assert ways[0].startswith("with its text encoders freed after encoding, ~25 GB")
    assert ways[-1] == "flux1-dev-Q8_0.gguf, ~20 GB"
    big_job = estimate(Z_IMAGE_PARTS, "bfloat16", 12.0, 1024)  # weights 19.1 GiB, a job 11.2 GiB
    assert [way for way in what_fits_instead(big_job, mps_budget(36 * GIB, 6 * GIB)) if way.startswith("at ")] == [
        "at 832x832, ~26 GB"]  # the largest square, in steps of 64, within 27 GiB
    assert "half precision" in what_fits_instead(estimate(Z_IMAGE_PARTS, "float32", 2.8, 1024),
                                                 mps_budget(32 * GIB, 6 * GIB))[-1]


def test_family_on_disk_before_loading(tmp_path):
    assert family_on_disk("demo").base == SD1
    assert family_on_disk("someone/not-downloaded", cache_dir=tmp_path) is None
    folder = tmp_path / "z"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "ZImagePipeline"}')
    model = family_on_disk(str(folder))
    assert model.base == ZIMAGE
    assert d.choose_dtype("auto", "cuda", model.family, d.DtypeFacts(torch_version="2.13.0")).value == "bfloat16"


def test_a_model_that_would_swap_is_offered_the_largest_known_one_of_its_family_that_fits():
    from tui.engine.getable import smaller_of_the_family

    flux = smaller_of_the_family("flux", "bfloat16", (1024, 1024))
    labels = [label for label, _need in flux]
    assert any("FLUX.1 dev Q8_0" in label for label in labels) and any("Q4_K_S" in label for label in labels)
    assert [need for _label, need in flux] == sorted((need for _label, need in flux), reverse=True)
    dev = estimate((Part("text_encoder", 123_000_000), Part("text_encoder_2", 4_760_000_000),
                    Part("transformer", 11_900_000_000), Part("vae", 84_000_000)), "bfloat16", 2.6, 1024)
    line, over = memory_line("FLUX.1-dev", dev, mps_budget(32 * GIB, 4 * GIB), lambda: flux)
    fitting = [label for label, need in flux if need <= recommended_working_set(32 * GIB)]
    assert over and line.endswith(f"{fitting[0]}, ~{gb(dict(flux)[fitting[0]])} GB")
    asked = []
    memory_line("FLUX.1-dev", dev, mps_budget(128 * GIB, 4 * GIB), lambda: asked.append(1) or flux)
    assert asked == []  # a model that fits is not compared with others
