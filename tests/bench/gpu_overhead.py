"""sdtui's cost over bare diffusers on a GPU, side by side in one run.

Run (on a CUDA machine): python -m tests.bench.gpu_overhead [--repeats N] [--steps N] [--size N]

Builds a pipeline with Stable Diffusion 1.5's architecture (UNet, VAE and CLIP text
encoder at their published sizes) and random weights, saves it as a diffusers folder,
and loads it the way users' models load. Then alternates, on the same pipeline, seed,
scheduler, size and steps:
  A. bare ``pipe(...)`` with an untouched scheduler,
  B. ``Engine.generate`` with live previews (4 per second) and a memory sample every step,
  C. the whole app, headless: Enter in the Textual app until the image is saved
     (engine, generation thread, messages, preview rendering, PNG and history row).
Prints medians and ratios against A, and writes bench-results/gpu_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def build_sd15_folder(folder: Path) -> None:
    """Stable Diffusion 1.5's published component configurations, random weights."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from tui.engine.demo import _byte_level_vocab

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
        max_position_embeddings=77, projection_dim=768, hidden_act="quick_gelu", bos_token_id=0, eos_token_id=1,
        pad_token_id=1))
    tokenizer = CLIPTokenizer(vocab=_byte_level_vocab(), merges=[], model_max_length=77)
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1)
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()

    import torch

    from tui.engine import Engine, EngineOptions, GenerationRequest
    from tui.engine.schedulers import build_scheduler, find_scheduler

    dtype = "float16" if args.device == "cuda" else "float32"
    work = Path(tempfile.mkdtemp(prefix="sdtui-gpu-"))
    folder = work / "sd15-random"
    began = time.perf_counter()
    build_sd15_folder(folder)
    print(f"built and saved an SD 1.5-architecture pipeline in {time.perf_counter() - began:.1f} s", flush=True)

    engine = Engine(EngineOptions(model=str(folder), device=args.device, dtype=dtype, previews=True,
                                  preview_max_fps=4.0))
    engine.load()
    request = GenerationRequest("a red fox in the snow", seed=7, steps=args.steps, width=args.size,
                                height=args.size, scheduler="Euler a")
    spec = find_scheduler(request.scheduler)
    bare_scheduler = build_scheduler(spec, engine._base_scheduler_config)

    def sync() -> None:
        if args.device == "cuda":
            torch.cuda.synchronize()

    def bare() -> float:
        pipe = engine.pipe
        tapped, pipe.scheduler = pipe.scheduler, bare_scheduler
        try:
            sync()
            t = time.perf_counter()
            pipe(prompt=request.prompt, num_inference_steps=request.steps, guidance_scale=request.guidance,
                 width=request.width, height=request.height, generator=torch.Generator("cpu").manual_seed(7))
            sync()
            return time.perf_counter() - t
        finally:
            pipe.scheduler = tapped

    def through_engine() -> float:
        sync()
        t = time.perf_counter()
        results = engine.generate(request)
        sync()
        assert len(results) == 1
        return time.perf_counter() - t

    engine.generate(request)  # warm-up: kernels, cuDNN autotune, scheduler built and tapped
    bare()
    times: dict[str, list[float]] = {"bare": [], "engine": [], "app": []}
    for _ in range(args.repeats):
        times["bare"].append(bare())
        times["engine"].append(through_engine())

    os.environ["SDTUI_HOME"] = str(work / "home")
    times["app"], bare_beside_app = asyncio.run(app_runs(folder, args, dtype, bare, (200, 60), True))
    variants = {}
    for terminal, previews in (((200, 60), False), ((100, 30), True)):
        app_times, bare_times = asyncio.run(app_runs(folder, args, dtype, bare, terminal, previews))
        label = f"app {terminal[0]}x{terminal[1]} previews {'on' if previews else 'off'}"
        variants[label] = round(statistics.median(app_times) / statistics.median(bare_times), 4)
        print(f"  {label}: {statistics.median(app_times):.3f} s, ratio {variants[label]:.3f}", flush=True)
    medians = {k: statistics.median(v) for k, v in times.items()}
    bare_app_median = statistics.median(bare_beside_app)
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    result = {
        "device": name, "torch": torch.__version__, "dtype": dtype, "size": args.size, "steps": args.steps,
        "scheduler": request.scheduler, "repeats": args.repeats,
        "bare_median_s": round(medians["bare"], 4), "engine_median_s": round(medians["engine"], 4),
        "engine_ratio": round(medians["engine"] / medians["bare"], 4),
        "app_median_s": round(medians["app"], 4), "bare_beside_app_median_s": round(bare_app_median, 4),
        "app_ratio": round(medians["app"] / bare_app_median, 4),
        "app_variants_ratio": variants,
        "runs": {**times, "bare_beside_app": bare_beside_app},
    }
    print(f"{name}, torch {torch.__version__}, {dtype}, SD 1.5 architecture, {args.size}x{args.size}, "
          f"{args.steps} steps, {request.scheduler}, {args.repeats} alternating runs")
    print(f"  bare pipe(...)                      {medians['bare']:.3f} s")
    print(f"  engine (previews, memory sampling)  {medians['engine']:.3f} s   ratio {result['engine_ratio']:.3f}")
    print(f"  whole app 200x60, Enter to saved    {medians['app']:.3f} s   ratio {result['app_ratio']:.3f} "
          f"(against bare runs alternated with it: {bare_app_median:.3f} s)")
    out = Path(os.environ.get("OUT", "bench-results"))
    out.mkdir(exist_ok=True)
    (out / "gpu_overhead.json").write_text(json.dumps(result, indent=2))


async def app_runs(folder: Path, args, dtype: str, bare, terminal: tuple[int, int],
                   previews: bool) -> tuple[list[float], list[float]]:
    """Enter in the headless app until the image is saved, alternating with bare runs."""
    from tui.app import SdtuiApp
    from tui.config import Settings
    from tui.locations import locations

    settings = Settings(model=str(folder), device=args.device, dtype=dtype, steps=args.steps, width=args.size,
                        height=args.size, seed=7, scheduler="Euler a", previews=previews, preview_max_fps=4.0)
    app = SdtuiApp(settings, places=locations(), save=False)
    app_times, bare_times = [], []
    async with app.run_test(size=terminal) as pilot:
        while not (app.engine.loaded and not app.service.busy):
            await pilot.pause(0.05)
        prompt = app.main_screen.query_one("#prompt")
        prompt.value = "a red fox in the snow"
        prompt.focus()
        for attempt in range(args.repeats + 1):
            before = app.history.count()
            t = time.perf_counter()
            await pilot.press("enter")
            while app.history.count() == before:
                await asyncio.sleep(0.002)
            elapsed = time.perf_counter() - t
            if attempt:  # the first is a warm-up for the app's own paths
                app_times.append(elapsed)
                bare_times.append(bare())
    return app_times, bare_times


if __name__ == "__main__":
    main()
