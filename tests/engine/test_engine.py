"""The engine on the real diffusers code, with the demo model."""

import threading

import numpy as np
import pytest
import torch

from tui.engine import (Cancelled, Engine, EngineOptions, Failed, Finished, GenerationRequest, Notice, Started,
                        Step)

SMALL = dict(width=128, height=128, steps=6)


def run(engine, request):
    events = []
    results = engine.generate(request, events.append)
    return results, events


def kinds(events):
    return [type(e).__name__ for e in events]


def test_event_order_for_a_two_image_job(demo_engine):
    results, events = run(demo_engine, GenerationRequest("a red fox", seed=11, count=2, **SMALL))
    names = kinds(events)
    assert names[0] == "Started"
    assert names == ["Started"] + ["Step"] * 6 + ["Finished"] + ["Step"] * 6 + ["Finished"]
    steps = [e for e in events if isinstance(e, Step)]
    assert [s.step for s in steps] == [1, 2, 3, 4, 5, 6] * 2
    assert all(s.total == 6 and s.it_per_s > 0 and s.memory.process_rss > 0 for s in steps)
    assert [r.seed for r in results] == [11, 12]
    assert results[0].image.size == (128, 128)
    assert results[0].timings.total_s > 0 and results[0].timings.peak_memory > 0
    assert results[0].info["model"] == "demo model (random weights)"


def test_same_seed_gives_identical_pixels_and_image_k_uses_seed_plus_k(demo_engine):
    first, _ = run(demo_engine, GenerationRequest("a lighthouse", seed=1234, **SMALL))
    again, _ = run(demo_engine, GenerationRequest("a lighthouse", seed=1234, **SMALL))
    pair, _ = run(demo_engine, GenerationRequest("a lighthouse", seed=1233, count=2, **SMALL))
    pixels = np.asarray(first[0].image)
    assert np.array_equal(pixels, np.asarray(again[0].image))
    assert np.array_equal(pixels, np.asarray(pair[1].image))
    assert not np.array_equal(pixels, np.asarray(pair[0].image))


def test_random_seed_is_drawn_and_reported(demo_engine):
    results, events = run(demo_engine, GenerationRequest("x", seed=None, **SMALL))
    started = events[0]
    assert isinstance(started, Started) and started.request.seed is not None
    assert results[0].seed == started.request.seed


def test_previews_are_small_rgb_images_of_latent_size(demo_engine):
    _, events = run(demo_engine, GenerationRequest("x", seed=1, width=256, height=192, steps=5))
    previews = [e.preview for e in events if isinstance(e, Step) and e.preview is not None]
    assert previews, "the demo engine has preview_max_fps=0 (unthrottled), so previews must come"
    assert all(p.size == (256 // 8, 192 // 8) and p.mode == "RGB" for p in previews)
    # The last step has no preview: the final image is on its way.
    assert events[-2].preview is None


@pytest.mark.parametrize("scheduler", ["Euler", "DPM++ 2M Karras", "UniPC", "DDIM", "PNDM", "LMS"])
def test_previews_use_the_denoised_estimate_where_the_scheduler_gives_one(demo_engine, scheduler):
    captured = []
    original = demo_engine._previewer.to_image

    def spy(latents, width, height):
        captured.append(latents)
        return original(latents, width, height)

    demo_engine._previewer.to_image = spy
    try:
        run(demo_engine, GenerationRequest("x", seed=3, scheduler=scheduler, **SMALL))
    finally:
        demo_engine._previewer.to_image = original
    assert captured and all(t.shape == (1, 4, 16, 16) for t in captured)


def test_preview_interval_and_switch_off():
    engine = Engine(EngineOptions(model="demo", preview_interval=3, preview_max_fps=0))
    _, events = run(engine, GenerationRequest("x", seed=1, width=128, height=128, steps=9))
    with_preview = [e.step for e in events if isinstance(e, Step) and e.preview is not None]
    assert with_preview == [3, 6]
    engine.options.previews = False
    _, events = run(engine, GenerationRequest("x", seed=1, **SMALL))
    assert all(e.preview is None for e in events if isinstance(e, Step))


def test_cancel_is_honoured_within_one_step_and_skips_the_vae_decode(demo_engine):
    decodes = []
    original_decode = demo_engine.pipe.vae.decode

    def counting_decode(*args, **kwargs):
        decodes.append(1)
        return original_decode(*args, **kwargs)

    def on_event(event):
        events.append(event)
        if isinstance(event, Step) and event.step == 3:
            demo_engine.cancel()

    events = []
    demo_engine.pipe.vae.decode = counting_decode
    try:
        results = demo_engine.generate(GenerationRequest("x", seed=5, count=3, **SMALL), on_event)
    finally:
        demo_engine.pipe.vae.decode = original_decode
    assert results == []
    assert kinds(events) == ["Started", "Step", "Step", "Step", "Cancelled"]
    assert decodes == []
    # The engine stays usable and a new job is not affected by the old cancel.
    results, events = run(demo_engine, GenerationRequest("x", seed=5, **SMALL))
    assert len(results) == 1 and kinds(events)[-1] == "Finished"


def test_cancel_from_another_thread(demo_engine):
    first_step = threading.Event()
    events = []

    def on_event(event):
        events.append(event)
        if isinstance(event, Step):
            first_step.set()

    worker = threading.Thread(target=demo_engine.generate,
                              args=(GenerationRequest("x", seed=1, width=256, height=256, steps=200), on_event))
    worker.start()
    assert first_step.wait(60)
    demo_engine.cancel()
    worker.join(30)
    assert not worker.is_alive()
    assert isinstance(events[-1], Cancelled)
    assert sum(isinstance(e, Step) for e in events) < 200


def test_a_cancel_while_idle_or_after_a_job_never_stops_a_later_job(demo_engine):
    assert demo_engine.cancel() is False  # nothing runs: nothing to cancel, nothing remembered
    results, events = run(demo_engine, GenerationRequest("x", seed=2, **SMALL))
    assert len(results) == 1 and kinds(events)[-1] == "Finished"
    demo_engine.cancel()  # right after the job ended
    results, events = run(demo_engine, GenerationRequest("x", seed=2, **SMALL))
    assert len(results) == 1 and kinds(events)[-1] == "Finished"


def test_a_jobs_own_token_set_before_it_starts_stops_it_at_its_first_step(demo_engine):
    token = threading.Event()
    token.set()
    events = []
    assert demo_engine.generate(GenerationRequest("x", seed=2, **SMALL), events.append, cancel=token) == []
    assert kinds(events) == ["Started", "Cancelled"]
    results, events = run(demo_engine, GenerationRequest("x", seed=2, **SMALL))  # its token, not this one
    assert len(results) == 1


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB, other allocations: 1 GB)"),
], ids=["cuda", "mps"])
def test_out_of_memory_inside_the_unet_becomes_a_failed_event_and_the_next_job_runs(demo_engine, error):
    def raise_oom(module, args, output):
        raise error

    handle = demo_engine.pipe.unet.register_forward_hook(raise_oom)
    try:
        results, events = run(demo_engine, GenerationRequest("x", seed=1, **SMALL))
    finally:
        handle.remove()
    assert results == []
    failed = events[-1]
    assert isinstance(failed, Failed) and failed.out_of_memory
    assert "attention slicing" in failed.message and "smaller size" in failed.message
    results, events = run(demo_engine, GenerationRequest("x", seed=1, **SMALL))
    assert len(results) == 1 and isinstance(events[-1], Finished)


def test_any_other_pipeline_error_is_one_line_and_the_engine_survives(demo_engine):
    def explode(module, args, output):
        raise ValueError("boom\nsecond line")

    handle = demo_engine.pipe.unet.register_forward_hook(explode)
    try:
        _, events = run(demo_engine, GenerationRequest("x", seed=1, **SMALL))
    finally:
        handle.remove()
    assert isinstance(events[-1], Failed) and events[-1].message == "generation failed: ValueError: boom"
    assert kinds(run(demo_engine, GenerationRequest("x", seed=1, **SMALL))[1])[-1] == "Finished"


def test_changing_scheduler_never_reloads_the_model(demo_engine):
    pipe, unet = demo_engine.pipe, demo_engine.pipe.unet
    for name in ("Euler a", "DDIM", "DPM++ 2M SDE Karras", "Heun", "Euler a"):
        _, events = run(demo_engine, GenerationRequest("x", seed=2, scheduler=name, **SMALL))
        assert isinstance(events[-1], Finished)
        assert type(demo_engine.pipe.scheduler).__name__ != "PNDMScheduler"
    assert demo_engine.pipe is pipe and demo_engine.pipe.unet is unet


def test_demo_model_is_identical_on_every_build():
    from tui.engine.demo import build_demo_pipeline

    first, second = build_demo_pipeline(), build_demo_pipeline()
    for a, b in zip(first.unet.parameters(), second.unet.parameters()):
        assert torch.equal(a, b)
    assert first.vae_scale_factor == 8


def test_load_reports_decisions_with_reasons():
    events = []
    engine = Engine(EngineOptions(model="demo"))
    engine.load(events.append)
    assert kinds(events) == ["LoadStarted", "Loaded"]
    loaded = events[-1]
    assert loaded.device == "cpu" and loaded.dtype == "float32"
    assert any(line.startswith("attention slicing: off (auto:") for line in loaded.decisions)
    assert any(line.startswith("warm-up pass: off") for line in loaded.decisions)


def test_bad_device_fails_generation_with_a_clear_message():
    engine = Engine(EngineOptions(model="demo", device="cuda"))
    _, events = run(engine, GenerationRequest("x", **SMALL))
    assert isinstance(events[-1], Failed) and events[-1].message.startswith("device: cuda was asked for")


def test_a_64_bit_seed_starts_from_the_noise_comfyui_draws(demo_engine):
    """ComfyUI draws its starting noise with torch.manual_seed(seed) and torch.randn on the CPU,
    so a ComfyUI seed, up to 2**64-1, must give the same starting latents here."""
    seed = 2**64 - 2
    drawn = []
    original = demo_engine.pipe.prepare_latents

    def recording(*args, **kwargs):
        drawn.append(original(*args, **kwargs))
        return drawn[-1]

    demo_engine.pipe.prepare_latents = recording
    try:
        results, _ = run(demo_engine, GenerationRequest("x", seed=seed, count=2, width=64, height=64, steps=2))
    finally:
        del demo_engine.pipe.prepare_latents
    assert [r.seed for r in results] == [seed, seed + 1]
    channels = drawn[0].shape[1]
    comfy = torch.randn((1, channels, 8, 8), generator=torch.manual_seed(seed), device="cpu")
    sigma = demo_engine.pipe.scheduler.init_noise_sigma
    assert torch.allclose(drawn[0][0:1].float(), comfy * sigma)


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")  # the NaN image, before its redo
def test_a_float16_vae_that_gives_nan_is_decoded_again_in_float32_and_remembered():
    """A VAE whose activations overflow float16 decodes to NaN, which becomes a black image; the
    engine decodes that image again in float32 and keeps this model's VAE in float32."""
    engine = Engine(EngineOptions(model="demo", dtype="float16", preview_max_fps=0))
    engine.load()
    with torch.no_grad():
        engine.pipe.vae.decoder.conv_in.weight.mul_(3e3)  # past float16's 65504 inside the decoder
    request = GenerationRequest("x", seed=1, width=64, height=64, steps=2)
    results, events = run(engine, request)
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert any("decoded again in float32" in n for n in notices)
    assert np.asarray(results[0].image).max() > 0 and engine.pipe.vae.dtype == torch.float32
    again, events = run(engine, request)  # the next job decodes in float32 from the start
    assert not any(isinstance(e, Notice) and "float32" in e.message for e in events)
    assert np.array_equal(np.asarray(again[0].image), np.asarray(results[0].image))


def test_images_record_the_machine_that_made_them(demo_engine):
    results, _ = run(demo_engine, GenerationRequest("x", seed=1, width=64, height=64, steps=1))
    info = results[0].info
    assert info["torch"] == torch.__version__ and info["os"] and info["chip"]
