"""Demo model speed, and the engine's cost over a bare diffusers call, side by side.

Run: python -m tests.bench.demo_speed [--repeats N]
Alternates engine and bare pipeline calls on the same pipeline, seed, scheduler, size
and steps, and prints medians and their ratio. Writes bench-results/demo_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    import torch

    from tui.engine import Engine, EngineOptions, GenerationRequest

    engine = Engine(EngineOptions(model="demo"))
    started = time.perf_counter()
    engine.load()
    load_s = time.perf_counter() - started
    request = GenerationRequest("a red fox", seed=7, width=args.size, height=args.size, steps=args.steps)
    engine.generate(request)  # warm-up: scheduler built, kernels touched

    def bare() -> float:
        began = time.perf_counter()
        engine.pipe(prompt=request.prompt, num_inference_steps=request.steps, guidance_scale=request.guidance,
                    width=request.width, height=request.height, generator=torch.Generator("cpu").manual_seed(7))
        return time.perf_counter() - began

    def through_engine() -> float:
        began = time.perf_counter()
        engine.generate(request)
        return time.perf_counter() - began

    times: dict[str, list[float]] = {"engine": [], "bare": []}
    for _ in range(args.repeats):
        times["engine"].append(through_engine())
        times["bare"].append(bare())
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "size": args.size,
        "steps": args.steps,
        "load_s": round(load_s, 3),
        "engine_median_s": round(medians["engine"], 3),
        "bare_median_s": round(medians["bare"], 3),
        "ratio": round(medians["engine"] / medians["bare"], 3),
        "runs": times,
    }
    print(f"demo model, {args.size}x{args.size}, {args.steps} steps, {args.repeats} alternating runs on "
          f"{result['cpus']} CPUs (torch {torch.__version__})")
    print(f"  load              {load_s:7.2f} s")
    print(f"  engine (previews) {medians['engine']:7.2f} s")
    print(f"  bare pipe(...)    {medians['bare']:7.2f} s")
    print(f"  ratio             {result['ratio']:7.3f}")
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    (out / "demo_speed.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
