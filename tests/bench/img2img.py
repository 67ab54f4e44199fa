"""Peak memory of image-to-image and hires fix against text-to-image, through the engine.

Run: python -m tests.bench.img2img [--model demo|sd15] [--device cpu|cuda|mps] [--smoke]

Image-to-image uses the loaded pipeline's ``from_pipe`` sibling, which shares every component:
its peak should sit near text-to-image's at the same size, never a UNet's worth above it (which
a second copy of the weights would add). Hires fix is compared with text-to-image at its final
size, the size its second pass runs at. On CUDA the figures are torch's peak allocated bytes
(reset before each job); elsewhere the process's resident memory, sampled by the engine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from tests.bench import save_result
from tests.bench.overhead import prepare


def _peak(engine, request) -> tuple[int, object]:
    import torch

    cuda = engine.device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    events: list = []
    results = engine.generate(request, events.append)
    if not results:
        raise RuntimeError(f"the job failed: {getattr(events[-1], 'message', events[-1])}")
    if cuda:
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated(), results[0].image
    return results[0].timings.peak_memory, results[0].image


def run(model: str, device: str, steps: int | None = None, size: int = 512, smoke: bool = False) -> dict:
    from tui.engine import Engine, EngineOptions, GenerationRequest
    from tui.engine.img2img import hires_size

    os.environ.setdefault("SDTUI_HOME", str(Path(tempfile.mkdtemp(prefix="sdtui-bench-")) / "home"))
    if smoke:
        steps, size = 4, 64  # 4 steps: hires at 0.45 runs one
    model_ref, device, dtype, steps = prepare(model, device, steps)
    engine = Engine(EngineOptions(model=model_ref, device=device, dtype=dtype, previews=False))
    engine.load()
    unet_bytes = sum(p.numel() * p.element_size() for p in engine.pipe.unet.parameters())
    base = GenerationRequest("a lighthouse at dusk, oil painting", seed=1, steps=steps, width=size, height=size)
    _peak(engine, base)  # warm-up: kernels and allocator pools
    txt2img, image = _peak(engine, base)
    source = Path(tempfile.mkdtemp(prefix="sdtui-bench-")) / "source.png"
    image.save(source)
    img2img, _ = _peak(engine, GenerationRequest(base.prompt, seed=2, steps=steps, width=size, height=size,
                                                 init_image=str(source), strength=0.5))
    big = hires_size(size, size, 1.5)
    txt2img_big, _ = _peak(engine, GenerationRequest(base.prompt, seed=1, steps=steps, width=big[0],
                                                     height=big[1]))
    hires, hires_image = _peak(engine, GenerationRequest(base.prompt, seed=1, steps=steps, width=size, height=size,
                                                         hires=1.5, strength=0.45))
    sibling = engine._img2img
    shared = all(sibling.components[name] is component for name, component in engine.pipe.components.items())
    result = {
        "model": model, "device": engine.device, "dtype": engine.dtype, "steps": steps, "size": size,
        "machine": engine.machine, "unet_bytes": unet_bytes, "every_component_shared": shared,
        "txt2img_peak": txt2img, "img2img_peak": img2img, "txt2img_hires_size_peak": txt2img_big,
        "hires_peak": hires, "hires_size": list(hires_image.size),
        "img2img_extra": img2img - txt2img, "hires_extra": hires - txt2img_big,
    }
    save_result(f"img2img-{model}.json", result)
    return result


def report(result: dict) -> str:
    mib = 1024 ** 2
    unet = result["unet_bytes"] / mib
    size, big = result["size"], "x".join(str(n) for n in result["hires_size"])
    lines = [f"image-to-image memory, {result['model']} on {result['device']} ({result['dtype']}), "
             f"{result['steps']} steps; UNet weights {unet:.0f} MiB; every component shared with the loaded "
             f"pipeline: {'yes' if result['every_component_shared'] else 'NO'}",
             f"  txt2img {size}x{size}       peak {result['txt2img_peak'] / mib:9.1f} MiB",
             f"  img2img {size}x{size} @0.5  peak {result['img2img_peak'] / mib:9.1f} MiB  "
             f"({result['img2img_extra'] / mib:+.1f} MiB; a second UNet would add {unet:.0f})",
             f"  txt2img {big}       peak {result['txt2img_hires_size_peak'] / mib:9.1f} MiB",
             f"  hires fix to {big}  peak {result['hires_peak'] / mib:9.1f} MiB  "
             f"({result['hires_extra'] / mib:+.1f} MiB against txt2img at {big})"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=("demo", "sd15"), default="demo")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--smoke", action="store_true", help="once at 64x64, 4 steps")
    args = parser.parse_args()
    print(report(run(args.model, args.device, args.steps, args.size, smoke=args.smoke)), flush=True)


if __name__ == "__main__":
    main()
