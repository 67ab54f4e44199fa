"""Quantizing on load, checked on a GPU: a Z-Image pipeline saved in bfloat16 to a temporary folder is loaded
through sdtui's Engine three times, with quantize none, nf4 (the transformer) and nf4-encoders (the text
encoder too), and each makes one image. For each: the weights resident per component (bitsandbytes' packed
bytes with their absmax), the time of the load and of one image, the peak memory, and sdtui's estimate made
before loading, whose weights should match what is resident.

Run: python -m tests.bench.nf4_check [--device cuda] [--published] [--repeats N] [--smoke]

Without ``--published`` the tiny test pipeline (tests/tiny_models.py) at 64x64 and 2 steps: it proves the
path (bitsandbytes' layers in place, an image made, "NF4" recorded), not the savings. ``--published``: the
published Z-Image-Turbo architecture (6 B transformer, Qwen3-4B, random weights; tests/bench/families.py,
about 20 GB on disk) at its default size and steps. Needs CUDA (or mps) and bitsandbytes. ``--smoke`` runs
only what the CPU can: choosing nf4 there is refused in one sentence and the loaded model stays.
Writes bench-results/nf4_check.json.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from tests.bench import save_result
from tests.bench.families import ARCHITECTURES, PROMPT

SETTINGS = ("none", "nf4", "nf4-encoders")


def save_bfloat16(folder: Path, published: bool, device: str) -> Path:
    """The Z-Image pipeline written to ``folder`` in bfloat16, as a downloaded one is."""
    import torch

    architecture = ARCHITECTURES["zimage"]
    pipe = architecture.published(device) if published else architecture.tiny(device).to(dtype=torch.bfloat16)
    target = folder / architecture.hub_name  # the name tells the variant: Turbo's defaults
    pipe.save_pretrained(target, safe_serialization=True)
    del pipe
    _free(device)
    return target


def held_bytes(module) -> int:
    """What a module's weights hold on the device: parameters and buffers as stored, and for each
    bitsandbytes 4-bit weight its block absmax (and their own absmax where double-quantized)."""
    total = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        total += tensor.numel() * tensor.element_size()
        state = getattr(tensor, "quant_state", None)
        while state is not None:
            total += state.absmax.numel() * state.absmax.element_size()
            state = getattr(state, "state2", None)
    return total


def run_setting(folder: Path, setting: str, device: str, repeats: int, smoke: bool) -> dict:
    import torch

    from tui.engine import Engine, EngineOptions, GenerationRequest
    from tui.engine.catalog import describe

    cuda = device == "cuda"
    guess = describe(str(folder)).estimate("bfloat16", quantize=setting)
    _free(device)
    began = time.perf_counter()
    engine = Engine(EngineOptions(model=str(folder), device=device, dtype="bfloat16", quantize=setting,
                                  preview_max_fps=0))
    engine.load()
    load_s = time.perf_counter() - began
    resident = {name: held_bytes(module) for name, module in engine.pipe.components.items()
                if isinstance(module, torch.nn.Module)}
    allocated = torch.cuda.memory_allocated() if cuda else 0
    defaults = engine.family_info.defaults
    size, steps = (64, 2) if smoke else (defaults.size, defaults.steps)
    request = GenerationRequest(PROMPT, seed=7, steps=steps, width=size, height=size, scheduler=defaults.scheduler,
                                guidance=defaults.guidance)
    engine.generate(request)  # warm-up
    times, peaks, finished = [], [], None
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        finished = engine.generate(request)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        peaks.append(torch.cuda.max_memory_allocated() if cuda else 0)
    row = {"quantize": setting, "quantization": engine.quantization, "load_s": round(load_s, 2),
           "image_s": round(statistics.median(times), 3), "size": size, "steps": steps,
           "resident_gb": {name: round(count / 1e9, 4) for name, count in resident.items()},
           "weights_gb": round(sum(resident.values()) / 1e9, 3), "allocated_gb": round(allocated / 1e9, 3),
           "peak_gb": round(max(peaks) / 1e9, 3),
           "estimate_weights_gb": round(guess.weights / 1e9, 3) if guess else None,
           "estimate_peak_gb": round(guess.peak / 1e9, 3) if guess else None,
           "recorded": finished[0].info.get("quantization", "") if finished else "",
           "decisions": [d.describe() for d in engine.decisions if d.name in ("quantize", "quantization")]}
    engine.unload()
    del engine
    _free(device)
    return row


def _line(row: dict, bf16: dict | None) -> str:
    saved = f", {row['weights_gb'] / bf16['weights_gb']:.2f} of bf16's weights" if bf16 and bf16["weights_gb"] else ""
    return (f"{row['quantize']:<13} {row['quantization'] or 'bf16':<5} load {row['load_s']:6.1f} s, image "
            f"{row['image_s']:7.3f} s at {row['size']}px/{row['steps']} steps; weights {row['weights_gb']:.3f} GB"
            f"{saved} (estimate {row['estimate_weights_gb']} GB), allocated {row['allocated_gb']:.3f} GB, peak "
            f"{row['peak_gb']:.3f} GB (estimate {row['estimate_peak_gb']} GB); recorded "
            f"{row['recorded'] or '-'!r}\n    per part: {row['resident_gb']}\n    " + "\n    ".join(row["decisions"]))


def refusal_on_the_cpu() -> dict:
    """nf4 on the CPU: the one sentence, and the demo model still loaded."""
    from tui.engine import Engine, EngineOptions
    from tui.engine.device import DeviceError

    engine = Engine(EngineOptions(model="demo", device="cpu", preview_max_fps=0))
    engine.load()
    pipe = engine.pipe
    engine.options = EngineOptions(model="demo", device="cpu", quantize="nf4", preview_max_fps=0)
    try:
        engine.load()
        said = ""
    except DeviceError as error:
        said = str(error)
    kept = engine.pipe is pipe
    print(f"nf4 on the CPU: {said!r}; the loaded model {'stays' if kept else 'WAS LOST'}", flush=True)
    if not said.startswith("quantize: nf4 needs a GPU") or not kept:
        raise SystemExit("nf4_check: the refusal on the CPU did not hold")
    engine.unload()
    return {"refusal": said, "model_kept": kept}


def run(device: str, published: bool, repeats: int, smoke: bool = False) -> dict:
    if smoke:
        return refusal_on_the_cpu()
    import torch

    from tui.engine.nf4 import quantize_facts

    facts = quantize_facts()
    results = {"device": torch.cuda.get_device_name(0) if device == "cuda" else device, "torch": torch.__version__,
               "bitsandbytes": facts.bitsandbytes, "diffusers": facts.diffusers,
               "model": "Z-Image-Turbo (published architecture)" if published else "Z-Image (tiny)",
               "date": time.strftime("%Y-%m-%d"), "rows": []}
    print(f"{results['device']}, torch {results['torch']}, bitsandbytes {facts.bitsandbytes}, diffusers "
          f"{facts.diffusers}: {results['model']}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="sdtui-nf4-"))
    try:
        folder = save_bfloat16(work, published, device)
        bf16 = None
        for setting in SETTINGS:
            row = run_setting(folder, setting, device, repeats, smoke=not published)
            bf16 = bf16 or row
            print(_line(row, bf16), flush=True)
            results["rows"].append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def _free(device: str) -> None:
    import torch

    gc.collect()
    if device == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--published", action="store_true", help="Z-Image-Turbo's published size (about 20 GB)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="only the refusal on the CPU")
    args = parser.parse_args()
    save_result("nf4_check.json", run(args.device, args.published, args.repeats, args.smoke))


if __name__ == "__main__":
    main()
