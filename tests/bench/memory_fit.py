"""Big models in a Mac's memory, measured on a GPU: for each family's published architecture at its default
size, the peak memory and the time of one image, side by side in one run, and sdtui's estimate made before
loading against each measured peak.

Run: python -m tests.bench.memory_fit [--family zimage|flux2-klein|flux|sd35|qwen-image ...] [--repeats N]
                                      [--max-steps N] [--gguf-only] [--device cuda] [--smoke]

Each pipeline is built on the GPU in bfloat16 with random weights (tests/bench/families.py). In turn:
  bare    ``pipe(...)`` at the default size, steps and guidance: every part resident.
  sdtui   ``Engine.generate`` of the same request with sdtui's default settings.
  small   ``Engine.generate`` at three quarters of the default side: the working memory's scaling.
  Q8_0    the transformer's linear layers held as a GGUF Q8_0 file holds them, through the engine.
  Q4_K    ... as Q4_K (Q4_0 for rows under 256 weights, which Q4_K's blocks cannot hold).
The GGUF blocks are random bytes with sane block scales: their kernels' time and memory are those of a
downloaded file; the layers a file keeps in 16 bits (norms, biases, embeddings) stay so. diffusers runs
them with GGUFLinear, which dequantizes each weight before its matrix product (its fused CUDA kernels come
from the Hub's kernels package, which this machine cannot fetch), as it does on a Mac.

Peak memory is torch's ``max_memory_allocated`` over the call; the weights are what is allocated before it.
The estimate is sdtui's (tui/engine/estimate.py): the parts' weights at the run dtype (GGUF parts as
stored) plus the family's measured working memory scaled to the size. ``--smoke`` runs the tiny test
pipelines on the CPU at 64x64 and 2 steps (no peaks there), to prove the benchmark still runs.
Writes bench-results/memory_fit.json.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from pathlib import Path

from tests.bench import save_result
from tests.bench.families import ARCHITECTURES, PROMPT, _engine_with, bare_call, family_arguments, results_header

GGUF_LAYOUTS = {  # name: (weights per block, bytes per block, where the block's fp16 scales sit)
    "Q8_0": (32, 34, (0,)),  # d, then 32 int8
    "Q4_0": (32, 18, (0,)),  # d, then 16 bytes of nibbles
    "Q4_K": (256, 144, (0, 2)),  # d, dmin, 12 bytes of 6-bit scales, 128 bytes of nibbles
}
BLOCK_SCALE = {"Q8_0": 0.02 / 127, "Q4_0": 0.02 / 8, "Q4_K": 0.02 / (63 * 15)}  # weights of about N(0, 0.02)


def random_gguf_weight(out_features: int, in_features: int, kind: str, device: str):
    """A GGUFParameter of ``kind`` whose blocks are random but for their scales."""
    import torch
    from diffusers.quantizers.gguf.utils import GGUFParameter
    from gguf import GGMLQuantizationType

    block, size, scale_at = GGUF_LAYOUTS[kind]
    blocks = torch.randint(0, 256, (out_features * in_features // block, size), dtype=torch.uint8, device=device)
    scale = torch.tensor([BLOCK_SCALE[kind]], dtype=torch.float16, device=device).view(torch.uint8)
    for at in scale_at:
        blocks[:, at:at + 2] = scale
    return GGUFParameter(blocks.view(out_features, -1), quant_type=getattr(GGMLQuantizationType, kind))


def quantize_transformer(pipe, kind: str) -> int:
    """Swap the transformer's linear layers for diffusers' GGUFLinear holding ``kind`` blocks (the
    block's own kind where a row is too short for it); returns how many were swapped."""
    import torch
    from diffusers.quantizers.gguf.utils import GGUFLinear

    transformer = pipe.transformer
    swapped = 0
    for name, module in list(transformer.named_modules()):
        if not isinstance(module, (torch.nn.Linear, GGUFLinear)):
            continue
        rows = module.in_features
        chosen = kind if rows % GGUF_LAYOUTS[kind][0] == 0 else "Q4_0" if rows % 32 == 0 else None
        if chosen is None:
            continue
        device = module.weight.device
        layer = GGUFLinear(module.in_features, module.out_features, module.bias is not None,
                           compute_dtype=torch.bfloat16 if device.type == "cuda" else torch.float32)
        layer.weight = random_gguf_weight(module.out_features, module.in_features, chosen, str(device))
        if module.bias is not None:
            layer.bias = torch.nn.Parameter(module.bias.detach(), requires_grad=False)
        parent_name, _, child = name.rpartition(".")
        setattr(transformer.get_submodule(parent_name) if parent_name else transformer, child, layer)
        swapped += 1
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return swapped


def pipeline_parts(pipe):
    """The parts sdtui's estimate reads from a model's files, here from the built pipeline: each component's
    floating weights, and its GGUF blocks' bytes as stored."""
    import torch
    from diffusers.quantizers.gguf.utils import GGUFParameter

    from tui.engine.estimate import Part

    parts = []
    for name, module in pipe.components.items():
        if not isinstance(module, torch.nn.Module):
            continue
        floating = fixed = 0
        kinds = set()
        for tensor in [*module.parameters(), *module.buffers()]:
            if isinstance(tensor, GGUFParameter):
                fixed += tensor.numel()  # uint8 blocks
                kinds.add(tensor.quant_type.name)
            elif tensor.is_floating_point():
                floating += tensor.numel()
            else:
                fixed += tensor.numel() * tensor.element_size()
        parts.append(Part(name, floating, fixed, "/".join(sorted(kinds))))
    return tuple(parts)


def run_family(key: str, device: str, repeats: int, smoke: bool, max_steps: int | None = None,
               gguf_only: bool = False) -> dict:
    import torch

    from tui.engine import GenerationRequest
    from tui.engine.estimate import estimate
    architecture = ARCHITECTURES[key]
    cuda = device == "cuda"
    pipe = (architecture.tiny if smoke else architecture.published)(device)
    folder = Path(tempfile.mkdtemp(prefix="sdtui-memory-")) / architecture.hub_name
    folder.mkdir()
    dtype = "float32" if device == "cpu" else "bfloat16"
    engine = _engine_with(pipe, folder, device, dtype)
    engine.load()
    model = engine.family_info
    defaults = model.defaults
    size, steps = (64, 2) if smoke else (defaults.size, min(defaults.steps, max_steps or defaults.steps))
    small = size * 3 // 4 // 16 * 16
    request = GenerationRequest(PROMPT, seed=7, steps=steps, width=size, height=size, scheduler=defaults.scheduler,
                                guidance=defaults.guidance)
    fresh = iter(range(10**6))

    bare = bare_call(pipe, engine, request)

    def through_engine(side: int = size, new_prompt: bool = False):
        """A job of the engine's; with ``new_prompt`` one its prompt cache has not seen (the encoders run),
        else a re-roll of the same prompt (answered from the cache)."""
        from dataclasses import replace

        def call(run_steps: int = steps) -> None:
            prompt = f"{PROMPT}, take {next(fresh)}" if new_prompt else PROMPT
            engine.generate(replace(request, prompt=prompt, width=side, height=side, steps=run_steps))

        return call

    def measured(name: str, call, side: int = size, without_encoders: bool = False) -> dict:
        """The call run once at two steps to warm up, then ``repeats`` times: its median time, its peak, the
        weights resident before it, and sdtui's estimate for what is loaded."""
        call(min(2, steps))
        times, peaks = [], []
        for _ in range(repeats):
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            resident = torch.cuda.memory_allocated() if cuda else 0
            start = time.perf_counter()
            call()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            peaks.append(torch.cuda.max_memory_allocated() if cuda else 0)
        guess = estimate(pipeline_parts(pipe), dtype, model.family.job_memory_gb, model.native_size, (side, side))
        need = guess.peak_without_encoders if without_encoders else guess.peak
        weights = guess.weights - (guess.encoders if without_encoders else 0)
        row = {"name": name, "size": side, "seconds": round(statistics.median(times), 3),
               "peak_gb": round(max(peaks) / 1e9, 2), "weights_gb": round(resident / 1e9, 2),
               "estimate_gb": round(need / 1e9, 2), "estimate_weights_gb": round(weights / 1e9, 2)}
        row["estimate_ratio"] = round(need / max(peaks), 3) if cuda and max(peaks) else None
        print(_line(model.label, row), flush=True)
        return row

    def encoders(setting: str) -> None:
        engine.options.text_encoders = setting
        if setting == "keep":
            engine._encoders.bring_back()

    rows = []
    if not gguf_only:
        rows += [measured("bare", bare), measured("sdtui, new prompt", through_engine(new_prompt=True)),
                 measured("sdtui", through_engine()), measured("sdtui", through_engine(small), small)]
        encoders("free")
        rows += [measured("sdtui, encoders freed", through_engine(), without_encoders=True),
                 measured("sdtui, encoders freed, new prompt", through_engine(new_prompt=True))]
        encoders("keep")
    for kind in ("Q8_0", "Q4_K"):
        swapped = quantize_transformer(pipe, kind)
        rows.append({**measured(f"sdtui, GGUF {kind}", through_engine()), "layers_quantized": swapped})
    encoders("free")
    rows.append(measured("sdtui, GGUF Q4_K, encoders freed", through_engine(), without_encoders=True))
    result = {"family": model.label, "model": architecture.hub_name, "steps": steps, "guidance": request.guidance,
              "job_memory_gb": model.family.job_memory_gb, "rows": rows}
    engine.unload()
    engine = pipe = None  # the next family needs the memory
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def _line(family: str, row: dict) -> str:
    ratio = f", estimate / peak {row['estimate_ratio']:.3f}" if row["estimate_ratio"] is not None else ""
    return (f"{family:<14} {row['name']:<34} {row['size']:>4}px: {row['seconds']:7.3f} s, peak {row['peak_gb']:6.2f} GB,"
            f" weights {row['weights_gb']:6.2f} GB; estimate {row['estimate_gb']:6.2f} GB (weights "
            f"{row['estimate_weights_gb']:.2f}){ratio}")


MAC_SIZES_GB = (16, 24, 32, 48, 64, 128)  # as Apple sells them: GiB


def mac_table(results: dict) -> str:
    """README's "which model fits my Mac" table: each measured peak (in GiB, as macOS counts) judged by
    sdtui's own verdict for a Mac of each size whose other apps hold the least sdtui assumes."""
    from tui.engine.fit import judge, mps_budget

    gib = 1024**3
    lines = ["| model, as it runs | needs | " + " | ".join(f"{size} GB" for size in MAC_SIZES_GB) + " |",
             "|---|---|" + "---|" * len(MAC_SIZES_GB)]
    for family in results["families"]:
        for row in family["rows"]:
            if row["size"] != max(r["size"] for r in family["rows"]) or not row["name"].startswith("sdtui") \
                    or "new prompt" in row["name"]:
                continue  # a re-roll's peak, at the default size, as sdtui runs it
            need = round(row["peak_gb"] * 1e9 / gib, 1)
            words = [judge(int(need * gib), mps_budget(size * gib, None)).word for size in MAC_SIZES_GB]
            label = row["name"].removeprefix("sdtui").strip(", ")
            label = label if label.startswith(("GGUF", "NF4")) else ", ".join(filter(None, ("bfloat16", label)))
            lines.append(f"| {family['model']}, {label} | {need} GB | " + " | ".join(words) + " |")
    return "\n".join(lines)


def run(families: list[str], device: str, repeats: int, smoke: bool, max_steps: int | None = None,
        gguf_only: bool = False) -> dict:
    results = results_header(device)
    for key in families:
        results["families"].append(run_family(key, device, repeats, smoke, max_steps, gguf_only))
    return results


def main() -> None:
    parser = family_arguments(2, "tiny pipelines on the CPU at 64x64, 2 steps")
    parser.add_argument("--max-steps", type=int, help="at most this many steps (the peak does not depend on them)")
    parser.add_argument("--gguf-only", action="store_true", help="only the GGUF rows (Q8_0, Q4_K, Q4_K freed)")
    parser.add_argument("--mac-table", metavar="JSON", help="print README's table from a run's results, and stop")
    args = parser.parse_args()
    if args.mac_table:
        import json

        print(mac_table(json.loads(Path(args.mac_table).read_text())))
        return
    device, repeats = ("cpu", 1) if args.smoke else (args.device, args.repeats)
    save_result("memory_fit.json", run(args.family or list(ARCHITECTURES), device, repeats, args.smoke, args.max_steps,
                                       args.gguf_only))


if __name__ == "__main__":
    main()
