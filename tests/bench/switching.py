"""Memory handed back when switching models: an SD 1.5-architecture pipeline is loaded,
then the demo model is picked; device memory and process RSS are read at each stage.

Run: python -m tests.bench.switching [--device cuda] [--smoke]   (writes bench-results/switching.json)
``--smoke`` loads the demo pipeline saved as a folder instead of the SD 1.5 architecture.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tests.bench import save_result


def run(device: str = "auto", smoke: bool = False) -> dict:
    from tests.bench.overhead import build_sd15_folder, device_name
    from tui.engine import Engine, EngineOptions, GenerationRequest
    from tui.engine.events import Loaded, Unloaded
    from tui.engine.memory import format_bytes

    folder = Path(tempfile.mkdtemp(prefix="sdtui-switch-")) / "sd15-random"
    if smoke:
        from tui.engine.demo import build_demo_pipeline

        build_demo_pipeline().save_pretrained(folder, safe_serialization=True)
    else:
        build_sd15_folder(folder)
    engine = Engine(EngineOptions(model=str(folder), device=device, preview_max_fps=0))
    engine.load()
    size = 64 if smoke else 512
    engine.generate(GenerationRequest("a fox", seed=1, steps=4 if not smoke else 2, width=size, height=size))
    from tui.engine.memory import sample_memory

    loaded_sd15 = sample_memory(engine.device)
    events = []
    engine.options = EngineOptions(model="demo", device=device, preview_max_fps=0)
    engine.load(events.append)
    unloaded = next(e for e in events if isinstance(e, Unloaded))
    loaded = next(e for e in events if isinstance(e, Loaded))
    result = {"device": device_name(engine.device)}
    first = "tiny pipeline" if smoke else "SD 1.5"
    for name, sample in ((f"{first} loaded, after a job", loaded_sd15), (f"after unloading {first}", unloaded.memory),
                         ("after loading the demo", loaded.memory)):
        result[name] = {"device_allocated": sample.device_allocated, "process_rss": sample.process_rss}
        print(f"{name:33} device {format_bytes(sample.device_allocated):>10}  "
              f"RSS {format_bytes(sample.process_rss):>10}")
    save_result("switching.json", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--smoke", action="store_true", help="a tiny pipeline instead of SD 1.5's architecture")
    args = parser.parse_args()
    run(args.device, args.smoke)


if __name__ == "__main__":
    main()
