"""Peak memory and second-job latency, each against bare diffusers doing the same job.

Run: python -m tests.bench.memory [--model demo|sd15] [--repeats N] [--smoke]

Memory: the peak RSS of ``sdtui generate --no-server`` (the engine, CLI, history and PNG in one
process) against a bare script that loads the same pipeline, calls ``pipe(...)`` and saves the
PNG, each in a fresh process.
Second job: on a loaded model, from the call to the end of the first denoising step,
through the engine and bare (the prompt's text encoding is most of it); the bare text
encoding alone is reported beside them.
``--smoke``: one repeat at 64x64 and 2 steps. Writes bench-results/memory-<model>.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench import BenchTimeout, save_result

BARE_SCRIPT = """
import sys, torch
from diffusers import AutoPipelineForText2Image
model, out, steps, size, device = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
if model == "demo":
    from tui.engine.demo import build_demo_pipeline
    pipe = build_demo_pipeline()
else:
    pipe = AutoPipelineForText2Image.from_pretrained(model, torch_dtype=torch.float16 if device != "cpu" else None)
pipe = pipe.to(device)
pipe.set_progress_bar_config(disable=True)
image = pipe(prompt="a red fox", num_inference_steps=steps, width=size, height=size,
             generator=torch.Generator("cpu").manual_seed(7)).images[0]
image.save(out)
"""

PEAK_WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)")


PROCESS_DEADLINE_S = 900  # one whole generation in a fresh process, model load included


def peak_rss_kib(argv: list[str], env: dict[str, str]) -> int:
    try:
        done = subprocess.run([sys.executable, "-c", PEAK_WRAPPER, *argv], capture_output=True, text=True, env=env,
                              check=True, timeout=PROCESS_DEADLINE_S)
    except subprocess.TimeoutExpired:
        raise BenchTimeout(f"benchmark: {argv[:3]} did not finish within {PROCESS_DEADLINE_S} s") from None
    kib, code = done.stdout.split()[-2:]
    if code != "0":
        raise RuntimeError(f"{argv[:3]} exited {code}")
    return int(kib)


def measure_memory(model: str, device: str, steps: int, size: int, repeats: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="sdtui-mem-"))
    env = {**os.environ, "SDTUI_HOME": str(work / "home"), "HF_HUB_OFFLINE": "1"}
    script = Path(sys.executable).parent / "sdtui"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "tui"]
    sdtui = [*command, "generate", "a red fox", "--seed", "7", "--steps", str(steps), "--width", str(size),
             "--height", str(size), "--device", device, "--output", str(work / "sdtui.png"), "--no-server"]
    sdtui += ["--demo"] if model == "demo" else ["--model", model]
    bare = [sys.executable, "-c", BARE_SCRIPT, model, str(work / "bare.png"), str(steps), str(size), device]
    runs = {"sdtui": [], "bare": []}
    for _ in range(repeats):
        runs["sdtui"].append(peak_rss_kib(sdtui, env))
        runs["bare"].append(peak_rss_kib(bare, env))
    sdtui_mib = statistics.median(runs["sdtui"]) / 1024
    bare_mib = statistics.median(runs["bare"]) / 1024
    return {"sdtui_peak_rss_mib": round(sdtui_mib, 1), "bare_peak_rss_mib": round(bare_mib, 1),
            "ratio": round(sdtui_mib / bare_mib, 4), "runs_kib": runs}


def measure_second_job(bench, repeats: int) -> dict:
    """Call to the end of the first step on a loaded model: engine against bare diffusers."""
    pipe, request, torch = bench.engine.pipe, bench.request, bench.torch

    def bare_first_step() -> float:
        mark: dict[str, float] = {}

        def first(_pipe, step, _t, kwargs):
            if step == 0:
                bench.sync()
                mark["first"] = time.perf_counter()
            return kwargs

        tapped, pipe.scheduler = pipe.scheduler, bench.bare_scheduler
        try:
            bench.sync()
            began = time.perf_counter()
            pipe(prompt=request.prompt, num_inference_steps=request.steps, guidance_scale=request.guidance,
                 width=request.width, height=request.height, generator=torch.Generator("cpu").manual_seed(7),
                 callback_on_step_end=first)
            return mark["first"] - began
        finally:
            pipe.scheduler = tapped

    def encode_only() -> float:
        bench.sync()
        began = time.perf_counter()
        pipe.encode_prompt(request.prompt, bench.engine.device, 1, True)
        bench.sync()
        return time.perf_counter() - began

    runs = {"engine": [], "bare": [], "encode": []}
    for _ in range(repeats):
        runs["engine"].append(bench.engine.generate(request)[0].timings.first_step_s)
        runs["bare"].append(bare_first_step())
        runs["encode"].append(encode_only())
    median = {k: statistics.median(v) for k, v in runs.items()}
    return {"engine_first_step_s": round(median["engine"], 4), "bare_first_step_s": round(median["bare"], 4),
            "bare_text_encode_s": round(median["encode"], 4),
            "ratio": round(median["engine"] / median["bare"], 4), "runs": runs}


def run(model: str, device: str, repeats: int, steps: int | None = None, size: int = 512) -> dict:
    import torch

    from tests.bench.overhead import Bench, device_name, prepare

    model_ref, device, dtype, steps = prepare(model, device, steps)
    result = {"model": model, "device": device_name(device), "torch": torch.__version__, "dtype": dtype,
              "steps": steps, "size": size, "date": time.strftime("%Y-%m-%d"),
              "memory": measure_memory(model_ref, device, steps, size, repeats)}
    bench = Bench(model_ref, device, dtype, steps, size)
    bench.through_engine()
    result["second_job"] = measure_second_job(bench, repeats)
    return result


def report(result: dict) -> str:
    mem, second = result["memory"], result["second_job"]
    return "\n".join([
        f"{result['model']} on {result['device']}, {result['dtype']}, {result['size']}x{result['size']}, "
        f"{result['steps']} steps",
        f"  peak RSS, sdtui generate {mem['sdtui_peak_rss_mib']:8.1f} MiB   bare script {mem['bare_peak_rss_mib']:8.1f} MiB"
        f"   ratio {mem['ratio']:.3f}",
        f"  second job, call to first step: engine {second['engine_first_step_s'] * 1000:7.1f} ms   bare "
        f"{second['bare_first_step_s'] * 1000:7.1f} ms   ratio {second['ratio']:.3f}   (bare text encoding alone "
        f"{second['bare_text_encode_s'] * 1000:.1f} ms)"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=("demo", "sd15"), default="demo")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="one repeat at 64x64, 2 steps")
    args = parser.parse_args()
    if args.smoke:
        result = run(args.model, args.device, 1, steps=2, size=64)
    else:
        result = run(args.model, args.device, args.repeats)
    print(report(result), flush=True)
    save_result(f"memory-{args.model}.json", result)


if __name__ == "__main__":
    main()
