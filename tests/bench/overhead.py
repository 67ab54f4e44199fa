"""sdtui's cost over bare diffusers, side by side in one run.

Run: python -m tests.bench.overhead [--model demo|sd15|zimage] [--device cpu|cuda|mps] [--repeats N]
                                    [--steps N] [--size N] [--engine-only] [--smoke]

``demo`` is the built-in tiny model (CPU, 512x512, 20 steps by default). ``sd15`` builds a
pipeline with Stable Diffusion 1.5's published architecture and random weights, saves it
as a diffusers folder and loads it as users' models load (float16 on a GPU, 30 steps).
``zimage`` does the same with Z-Image-Turbo's (6.15 B transformer, Qwen3-4B text encoder,
FLUX.1's VAE; bfloat16, 8 steps at guidance 0 with FlowMatch Euler, its family's defaults).
``--engine-only`` leaves the app runs out (a big model loads a second time in the server).
On the same pipeline, seed, scheduler, size and steps it alternates:
  bare    ``pipe(...)`` with an untouched scheduler;
  engine  ``Engine.generate`` with live previews (4 per second) and memory sampling;
  app     the whole app, headless (Textual's test driver), as a client of ``sdtui serve``
          (another process, which the first app run starts and which loads the same model):
          from Enter in the prompt box to the finished image on screen ("shown"; the server
          has saved its PNG and history row by then), at 200x60 with previews on and off and
          at 100x30 with previews on.
Each app run is paired with a bare run right after it; ratios are medians over medians.
``--smoke`` runs every part once at 64x64 and 2 steps, to prove the benchmark still runs.
Writes bench-results/overhead-<model>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from tests.bench import save_result, stop_server_of, wait_until_async

TERMINALS = (((200, 60), True), ((200, 60), False), ((100, 30), True))
SMOKE = dict(repeats=1, steps=2, size=64)
JOB_DEADLINE_S = 600  # one job through the app; a hang fails with a message instead of waiting forever


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


def build_z_image_folder(folder: Path, device: str) -> None:
    """Z-Image-Turbo's published architecture (families.published_z_image_turbo: random bfloat16
    weights made on ``device``) saved as a diffusers folder."""
    from tests.bench.families import published_z_image_turbo

    published_z_image_turbo(device).save_pretrained(folder, safe_serialization=True)


class Bench:
    """One loaded engine, a bare call on its pipeline, and the request both make."""

    def __init__(self, model: str, device: str, dtype: str, steps: int, size: int):
        import torch

        from tui.engine import Engine, EngineOptions, GenerationRequest
        from tui.engine.schedulers import DEFAULT_SCHEDULER, build_scheduler, find_scheduler

        self.torch, self.device, self.dtype, self.model = torch, device, dtype, model
        self.engine = Engine(EngineOptions(model=model, device=device, dtype=dtype, previews=True,
                                           preview_max_fps=4.0))
        self.engine.load()
        defaults = self.engine.family_info.defaults  # the family's sampler and guidance (Turbo: none)
        self.scheduler = "Euler a" if defaults.scheduler == DEFAULT_SCHEDULER else defaults.scheduler
        self.request = GenerationRequest("a red fox in the snow", seed=7, steps=steps, width=size, height=size,
                                         scheduler=self.scheduler, guidance=defaults.guidance)
        self.bare_scheduler = build_scheduler(find_scheduler(self.scheduler), self.engine._base_scheduler_config)

    def sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def bare(self) -> float:
        pipe, request = self.engine.pipe, self.request
        tapped, pipe.scheduler = pipe.scheduler, self.bare_scheduler
        try:
            guidance = self.engine._guidance(request.guidance, {"prompt": request.prompt})
            self.sync()
            began = time.perf_counter()
            pipe(prompt=request.prompt, num_inference_steps=request.steps, **guidance,
                 width=request.width, height=request.height, generator=self.torch.Generator("cpu").manual_seed(7))
            self.sync()
            return time.perf_counter() - began
        finally:
            pipe.scheduler = tapped

    def through_engine(self) -> float:
        self.sync()
        began = time.perf_counter()
        assert len(self.engine.generate(self.request)) == 1
        self.sync()
        return time.perf_counter() - began


async def app_runs(bench: Bench, repeats: int, terminal: tuple[int, int], previews: bool) -> dict[str, list[float]]:
    """Enter in the headless app until the image is shown and until it is saved, each run
    followed by a bare run."""
    from tui.client.app import SdtuiApp
    from tui.config import Settings
    from tui.locations import locations
    from tui.client.widgets.thumbnail import Thumbnail

    request = bench.request
    settings = Settings(model=bench.model, device=bench.device, dtype=bench.dtype, steps=request.steps,
                        width=request.width, height=request.height, seed=7, scheduler="Euler a",
                        previews=previews, preview_max_fps=4.0, family_defaults=False)
    app = SdtuiApp(settings, places=locations(), save=False)  # a client: the job runs in the server
    marks: dict[str, float] = {}
    original_show = Thumbnail.show

    def show(self, image, *args, **kwargs):
        result = original_show(self, image, *args, **kwargs)
        if image is not None and image.size == (request.width, request.height) and self.id == "preview":
            marks.setdefault("shown", time.perf_counter())
        return result

    Thumbnail.show = show
    times: dict[str, list[float]] = {"shown": [], "saved": [], "bare": [], "ui_cpu": [], "pipeline": []}
    try:
        async with app.run_test(size=terminal) as pilot:
            await wait_until_async(lambda: app.session.model is not None and not app.session.busy
                                   and not app.session.loading, JOB_DEADLINE_S, "the model loaded in the server")
            prompt = app.main_screen.query_one("#prompt")
            prompt.value = request.prompt
            prompt.focus()
            for attempt in range(repeats + 1):
                marks.clear()
                before = app.history.count()
                app.session.last_path = None  # not the history's latest image, shown at start
                ui_cpu = time.thread_time()  # this coroutine runs on the interface thread
                began = time.perf_counter()
                await pilot.press("enter")
                await wait_until_async(lambda: app.session.last_path is not None, JOB_DEADLINE_S,
                                       f"saved image from the app ({terminal[0]}x{terminal[1]}, run {attempt})")
                assert app.history.count() == before + 1, (app.history.count(), before)
                saved = time.perf_counter() - began
                app.session.last_path = None
                await wait_until_async(lambda: not app.session.busy, JOB_DEADLINE_S, "idle app after the job")
                if attempt:  # the first warms the app's own paths
                    times["ui_cpu"].append(time.thread_time() - ui_cpu)
                    times["shown"].append(marks.get("shown", began + saved) - began)
                    times["saved"].append(saved)
                    # The server's own pipeline call (to decoded pixels, as bare measures): the rest of
                    # "shown" is what the queue, the socket and the app add, free of the GPU's noise.
                    times["pipeline"].append(app.history.latest_done().total_s)
                    times["bare"].append(bench.bare())
    finally:
        Thumbnail.show = original_show
    return times


def prepare(model: str, device: str, steps: int | None) -> tuple[str, str, str, int]:
    """What a benchmark runs: the model reference (the demo, or a freshly built folder of SD 1.5's or
    Z-Image-Turbo's architecture), the resolved device, its dtype (float16 on a GPU, bfloat16 for
    Z-Image) and the steps (20 demo, 30 sd15, 8 zimage)."""
    import torch

    from tui.engine.device import choose_device

    device = choose_device(device, torch.backends.mps.is_available(), torch.cuda.is_available()).value
    dtype = "float32" if device == "cpu" else "float16"
    if model == "demo":
        return "demo", device, dtype, steps or 20
    folder = Path(tempfile.mkdtemp(prefix=f"sdtui-{model}-")) / f"{model}-random"
    if model == "zimage":
        folder = folder.with_name("z-image-turbo-random")  # the name says Turbo: its family's Turbo defaults
        build_z_image_folder(folder, device)
        return str(folder), device, "float32" if device == "cpu" else "bfloat16", steps or 8
    build_sd15_folder(folder)
    return str(folder), device, dtype, steps or 30


def run(model: str, device: str, repeats: int, steps: int | None, size: int, engine_only: bool = False) -> dict:
    import torch

    os.environ["SDTUI_HOME"] = str(Path(tempfile.mkdtemp(prefix="sdtui-bench-")) / "home")
    model_ref, device, dtype, steps = prepare(model, device, steps)
    bench = Bench(model_ref, device, dtype, steps, size)
    bench.through_engine()  # warm-up: kernels, autotuning, the tapped scheduler
    bench.bare()
    engine_runs = {"engine": [], "bare": []}
    peaks = {"engine": 0, "bare": 0}
    for _ in range(repeats):
        for name, call in (("bare", bench.bare), ("engine", bench.through_engine)):
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            engine_runs[name].append(call())
            if device == "cuda":
                peaks[name] = max(peaks[name], torch.cuda.max_memory_allocated())
    median = statistics.median
    result = {
        "model": model, "device": device_name(device), "torch": torch.__version__, "dtype": dtype,
        "size": size, "steps": steps, "scheduler": bench.scheduler, "guidance": bench.request.guidance,
        "repeats": repeats, "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
        "bare_s": round(median(engine_runs["bare"]), 4),
        "engine_s": round(median(engine_runs["engine"]), 4),
        "engine_ratio": round(median(engine_runs["engine"]) / median(engine_runs["bare"]), 4),
        "peak_gb": {name: round(value / 1e9, 2) for name, value in peaks.items()} if device == "cuda" else {},
        "app": {}, "runs": {"engine": engine_runs},
    }
    for terminal, previews in () if engine_only else TERMINALS:
        label = f"{terminal[0]}x{terminal[1]} previews {'on' if previews else 'off'}"
        times = asyncio.run(app_runs(bench, repeats, terminal, previews))
        bare = median(times["bare"])
        result["app"][label] = {"shown_s": round(median(times["shown"]), 4), "saved_s": round(median(times["saved"]), 4),
                                "bare_s": round(bare, 4), "ui_cpu_s": round(median(times["ui_cpu"]), 4),
                                "shown_ratio": round(median(times["shown"]) / bare, 4),
                                "pipeline_s": round(median(times["pipeline"]), 4),
                                "around_s": round(median(s - p for s, p in zip(times["shown"], times["pipeline"])), 4),
                                "saved_ratio": round(median(times["saved"]) / bare, 4)}
        result["runs"][label] = times
    stop_server_of(dict(os.environ))  # the app started it
    return result


def device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{device} ({platform.machine()}, {os.cpu_count()} cores)"


def report(result: dict) -> str:
    lines = [f"{result['model']} on {result['device']}, torch {result['torch']}, {result['dtype']}, "
             f"{result['size']}x{result['size']}, {result['steps']} steps, {result['scheduler']}, "
             f"{result['repeats']} alternating runs",
             f"  {'bare pipe(...)':34} {result['bare_s']:8.3f} s",
             f"  {'engine (previews, memory)':34} {result['engine_s']:8.3f} s   ratio {result['engine_ratio']:.3f}"]
    if result.get("peak_gb"):
        lines.append(f"  {'peak GPU memory, bare / engine':34} {result['peak_gb']['bare']:.2f} GB / "
                     f"{result['peak_gb']['engine']:.2f} GB")
    for label, figures in result["app"].items():
        lines.append(f"  {'app ' + label + ', shown':34} {figures['shown_s']:8.3f} s   ratio "
                     f"{figures['shown_ratio']:.3f}   (saved: {figures['saved_s']:.3f} s, "
                     f"ratio {figures['saved_ratio']:.3f}; bare beside it {figures['bare_s']:.3f} s; "
                     f"interface thread CPU {figures['ui_cpu_s']:.3f} s; the server's pipeline call "
                     f"{figures['pipeline_s']:.3f} s, and around it {figures['around_s'] * 1000:.0f} ms)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=("demo", "sd15", "zimage"), default="demo")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--engine-only", action="store_true", help="no app runs")
    parser.add_argument("--smoke", action="store_true", help="each part once at 64x64, 2 steps")
    args = parser.parse_args()
    if args.smoke:
        args.repeats, args.steps, args.size = SMOKE["repeats"], SMOKE["steps"], SMOKE["size"]
    result = run(args.model, args.device, args.repeats, args.steps, args.size, args.engine_only)
    print(report(result), flush=True)
    save_result(f"overhead-{args.model}.json", result)


if __name__ == "__main__":
    main()
