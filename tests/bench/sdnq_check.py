"""Pre-quantized SDNQ repositories, checked on a GPU: a family's published architecture (random bfloat16 weights,
tests/bench/families.py) has its transformer and text encoders quantized by the sdnq package as the SDNQ
repositories on the Hub are (uint4 with an SVD correction of rank 32, or int8), is saved to a folder, and is then
loaded from that folder twice: by bare diffusers (``from_pretrained`` with sdnq imported) and by sdtui's Engine.
For each: the bits per weight the quantized parts store, the weights resident, the load time, one image's time
and peak memory, and sdtui's estimate made from the folder's headers before loading.

Run: python -m tests.bench.sdnq_check [--family zimage flux2-klein] [--weights uint4 int8] [--device cuda]
                                      [--repeats N] [--smoke]

``--smoke`` runs the tiny Z-Image pipeline on the CPU at 64x64 and 2 steps (its layers are under sdnq's default
size limits, which are lowered for it), to prove the path: an image made, "SDNQ ..." recorded.
Writes bench-results/sdnq_check.json.
"""

from __future__ import annotations

import gc
import importlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from tests.bench import save_result
from tests.bench.families import ARCHITECTURES, PROMPT, bare_call, family_arguments, results_header
from tests.bench.nf4_check import held_bytes

SVD_RANK = 32  # the rank Disty0's "-svd-r32" repositories use


def quantize_with_sdnq(pipe, weights_dtype: str, svd: bool, small_layers: bool = False) -> dict[str, int]:
    """Quantize ``pipe``'s transformer and text encoders in place with sdnq; returns each part's weights
    before. ``small_layers``: also the layers under sdnq's default limits (16384 weights, 32 channels)."""
    import torch
    from sdnq import sdnq_post_load_quant

    limits = dict(minimum_allowed_numel=64, minimum_allowed_channel_size=8) if small_layers else {}
    counts = {}
    for name, module in pipe.components.items():
        if isinstance(module, torch.nn.Module) and (name == "transformer" or name.startswith("text_encoder")):
            counts[name] = sum(p.numel() for p in module.parameters())
            dtype = next(module.parameters()).dtype
            setattr(pipe, name, sdnq_post_load_quant(module, weights_dtype=weights_dtype, torch_dtype=dtype,
                                                     use_svd=svd, svd_rank=SVD_RANK, **limits))
    return counts


def stored_bytes(folder: Path, name: str) -> int:
    return sum(path.stat().st_size for path in (folder / name).glob("*.safetensors"))


def _measure(call, device: str, repeats: int) -> tuple[float, float]:
    """The call's median time and its peak memory, after one warm-up call."""
    import torch

    call()
    times, peaks = [], []
    for _ in range(repeats):
        _free(device)
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        call()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        peaks.append(torch.cuda.max_memory_allocated() if device == "cuda" else 0)
    return statistics.median(times), max(peaks)


def run_one(key: str, weights_dtype: str, device: str, repeats: int, smoke: bool) -> dict:
    importlib.import_module("sdnq")  # bare diffusers needs it imported for the text encoders, as the model cards say
    import torch
    from diffusers import DiffusionPipeline

    from tui.engine import Engine, EngineOptions, GenerationRequest
    from tui.engine.catalog import describe

    architecture = ARCHITECTURES[key]
    dtype = torch.float32 if smoke else torch.bfloat16
    pipe = architecture.tiny(device) if smoke else architecture.published(device)
    svd = weights_dtype == "uint4"
    began = time.perf_counter()
    counts = quantize_with_sdnq(pipe, weights_dtype, svd, small_layers=smoke)
    quantize_s = time.perf_counter() - began
    work = Path(tempfile.mkdtemp(prefix="sdtui-sdnq-"))
    folder = work / f"{architecture.hub_name}-SDNQ-{weights_dtype}"  # the name tells the variant, as the Hub's do
    try:
        pipe.save_pretrained(folder)
        pipe = None
        _free(device)
        bits = {name: round(stored_bytes(folder, name) * 8 / count, 3) for name, count in counts.items()}
        entry = describe(str(folder))  # read before loading, as the picker and the load's memory line read it

        began = time.perf_counter()
        engine = Engine(EngineOptions(model=str(folder), device=device, dtype="float32" if smoke else "bfloat16",
                                      preview_max_fps=0))
        engine.load()
        load_s = time.perf_counter() - began
        resident = sum(held_bytes(m) for m in engine.pipe.components.values() if isinstance(m, torch.nn.Module))
        defaults = engine.family_info.defaults
        size, steps = (64, 2) if smoke else (defaults.size, defaults.steps)
        guess = entry.estimate("float32" if smoke else "bfloat16", (size, size))
        request = GenerationRequest(PROMPT, seed=7, steps=steps, width=size, height=size,
                                    scheduler=defaults.scheduler, guidance=defaults.guidance)
        finished = []
        sdtui_s, sdtui_peak = _measure(lambda: finished.append(engine.generate(request)), device, repeats)
        recorded = finished[-1][0].info.get("quantization", "")
        decisions = [d.describe() for d in engine.decisions if d.name == "quantization"]
        scheduler_config = dict(engine._base_scheduler_config)
        engine.unload()
        _free(device)

        began = time.perf_counter()
        bare = DiffusionPipeline.from_pretrained(folder, torch_dtype=dtype).to(device)
        bare.set_progress_bar_config(disable=True)
        bare_load_s = time.perf_counter() - began
        engine._base_scheduler_config = scheduler_config  # bare_call reads the family's sampler from the engine
        bare_s, bare_peak = _measure(bare_call(bare, engine, request), device, repeats)
        bare = None
        _free(device)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    row = {"family": key, "model": folder.name, "weights": weights_dtype, "svd_rank": SVD_RANK if svd else 0,
           "size": size, "steps": steps, "quantize_s": round(quantize_s, 1), "bits_per_weight": bits,
           "sdtui_load_s": round(load_s, 2), "bare_load_s": round(bare_load_s, 2),
           "sdtui_s": round(sdtui_s, 3), "bare_s": round(bare_s, 3), "time_ratio": round(sdtui_s / bare_s, 3),
           "resident_gb": round(resident / 1e9, 3), "estimate_weights_gb": round(guess.weights / 1e9, 3),
           "sdtui_peak_gb": round(sdtui_peak / 1e9, 3), "bare_peak_gb": round(bare_peak / 1e9, 3),
           "estimate_peak_gb": round(guess.peak / 1e9, 3),
           "estimate_ratio": round(guess.peak / sdtui_peak, 3) if sdtui_peak else None,
           "recorded": recorded, "decisions": decisions}
    print(_line(row), flush=True)
    return row


def _line(row: dict) -> str:
    ratio = f" ({row['estimate_ratio']:.3f} of it)" if row["estimate_ratio"] else ""
    return (f"{row['model']:<34} bits/weight {row['bits_per_weight']}; weights {row['resident_gb']:.2f} GB (estimate "
            f"{row['estimate_weights_gb']:.2f}); {row['size']}px/{row['steps']} steps: sdtui {row['sdtui_s']:.3f} s "
            f"vs bare {row['bare_s']:.3f} s ({row['time_ratio']:.3f}), peak {row['sdtui_peak_gb']:.2f} GB vs bare "
            f"{row['bare_peak_gb']:.2f} GB, estimate {row['estimate_peak_gb']:.2f} GB{ratio}; load sdtui "
            f"{row['sdtui_load_s']:.1f} s, bare {row['bare_load_s']:.1f} s; recorded {row['recorded']!r}")


def _free(device: str) -> None:
    import torch

    gc.collect()
    if device == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def run(families: list[str], weights: list[str], device: str, repeats: int, smoke: bool = False) -> dict:
    results = results_header(device)
    results["rows"] = [run_one(key, dtype, device, repeats, smoke) for key in families for dtype in weights]
    return results


def main() -> None:
    parser = family_arguments(2, "the tiny Z-Image pipeline on the CPU at 64x64, 2 steps")
    parser.add_argument("--weights", nargs="+", default=["uint4", "int8"], choices=["uint4", "int8"])
    args = parser.parse_args()
    if args.smoke:
        save_result("sdnq_check.json", run(["zimage"], ["uint4"], "cpu", 1, smoke=True))
        return
    save_result("sdnq_check.json", run(args.family or ["zimage", "flux2-klein"], args.weights, args.device,
                                       args.repeats))


if __name__ == "__main__":
    main()
