"""The estimate made from a model's files before it loads, against what the loaded model and its job
really hold on the CPU: the weights PyTorch keeps resident (every parameter and buffer) and the peak
of the tensors PyTorch's own profiler records while a job runs.

The model is a small Z-Image (tens of megabytes, saved in float32 and run in bfloat16, so the dtype's
conversion is part of what is checked) at a small size, where the weights are most of the peak; a
job's working memory at the published size is checked against the GPU in tests/bench/memory_fit.py.
"""

import logging

import pytest

from tui.engine import Engine, EngineOptions, GenerationRequest
from tui.engine.catalog import describe
from tui.engine.memory import format_bytes
from tui.engine.weights import module_bytes, pipeline_modules

SIZE = 64


def small_z_image():
    """Z-Image's architecture at a width of 768 (about 80 M weights in its transformer), with the tiny
    pipeline's text encoder, VAE and tokenizer."""
    import torch

    from tests.tiny_models import build_tiny_z_image, z_image_transformer

    pipe = build_tiny_z_image()
    torch.manual_seed(1)
    pipe.register_modules(transformer=z_image_transformer(dim=768, heads=12, axes_dims=(32, 16, 16), layers=6))
    return pipe


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("small") / "Z-Image-Turbo"
    small_z_image().save_pretrained(path)  # float32 on disk
    return path


def peak_during(call) -> int:
    """The most bytes of tensors alive at once while ``call`` runs, above those alive before it, from
    PyTorch's profiler: each operator's own allocations in the order they happened, and the frees it
    records between them."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    changes = sorted((event.time_range.start, event.cpu_memory_usage if event.name == "[memory]"
                      else event.self_cpu_memory_usage) for event in prof.events())
    alive = peak = 0
    for _start, change in changes:
        alive += change
        peak = max(peak, alive)
    return peak


def test_the_estimate_is_within_15_percent_of_the_measured_peak(folder, caplog):
    estimate = describe(str(folder)).estimate("bfloat16", (SIZE, SIZE))
    engine = Engine(EngineOptions(model=str(folder), device="cpu", dtype="bfloat16", preview_max_fps=0))
    with caplog.at_level(logging.INFO, logger="tui.engine"):
        engine.load()
    resident = {name: module_bytes(module) for name, module in pipeline_modules(engine.pipe).items()}
    assert estimate.weights == pytest.approx(sum(resident.values()), rel=0.01)
    assert estimate.resident(next(p for p in estimate.parts if p.name == "transformer")) == \
        pytest.approx(resident["transformer"], rel=0.01)  # float32 on disk, held in bfloat16
    request = GenerationRequest("a red fox", width=SIZE, height=SIZE, steps=2, seed=3, guidance=0.0,
                                scheduler="FlowMatch Euler")
    measured = sum(resident.values()) + peak_during(lambda: engine.generate(request))
    assert estimate.peak == pytest.approx(measured, rel=0.15)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("memory: Z-Image-Turbo needs")]
    assert len(said) == 1 and "fits in" in said[0] and "transformer" in said[0]


def test_the_memory_line_says_what_the_model_holds_by_part_and_the_jobs_peak(folder):
    """Each step's memory reading carries the parts the loaded model holds (the text encoders at 0 while
    they are freed) and the job's peak so far; the status line shows them first."""
    from tui.client.widgets.status import memory_text
    from tui.engine.events import Loaded, Step

    events = []
    engine = Engine(EngineOptions(model=str(folder), device="cpu", dtype="bfloat16", preview_max_fps=0,
                                  text_encoders="free"))
    engine.load(events.append)
    held = next(e for e in events if isinstance(e, Loaded)).memory.held
    assert set(held) == {"transformer", "text encoders", "VAE"} and all(held.values())
    request = GenerationRequest("a fox in the snow", width=SIZE, height=SIZE, steps=2, seed=3, guidance=0.0,
                                scheduler="FlowMatch Euler")
    engine.generate(request, events.append)
    steps = [e.memory for e in events if isinstance(e, Step)]
    assert steps and steps[-1].held == {**held, "text encoders": 0}
    assert steps[-1].job_peak >= steps[-1].process_rss
    line = memory_text(steps[-1]).plain
    assert line.startswith(f"model {format_bytes(sum(steps[-1].held.values()))}: transformer, VAE "
                           "(text encoders off)  peak ")
    assert line.index("swap") < line.index("RAM") < line.index("RSS")


def test_a_load_that_would_swap_is_offered_the_familys_quantized_files_and_nf4(folder):
    """What the engine offers instead, read before loading: the known GGUF files of Z-Image-Turbo and, on a
    GPU, NF4 with the text encoder; the largest first, each with its need."""
    engine = Engine(EngineOptions(model=str(folder)))
    estimate = describe(str(folder)).estimate("bfloat16")
    offered = dict(engine._alternatives(estimate, "mps"))
    assert any("Z-Image Turbo Q8_0" in label for label in offered)
    assert any("Z-Image Turbo Q4_K_M" in label for label in offered)
    assert offered["with --quantize nf4-encoders (bitsandbytes)"] < estimate.peak
    assert list(offered.values()) == sorted(offered.values(), reverse=True)
    assert not any("nf4" in label for label, _need in engine._alternatives(estimate, "cpu"))
