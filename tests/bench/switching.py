"""Memory handed back when switching models: an SD 1.5-architecture pipeline is loaded,
then the demo model is picked; device memory and process RSS are read at each stage.

Run: python -m tests.bench.switching [--device cuda]   (writes bench-results/switching.json)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tests.bench import save_result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    from tests.bench.overhead import build_sd15_folder, device_name
    from tui.engine import Engine, EngineOptions, GenerationRequest
    from tui.engine.events import Loaded, Unloaded
    from tui.engine.memory import format_bytes

    folder = Path(tempfile.mkdtemp(prefix="sdtui-switch-")) / "sd15-random"
    build_sd15_folder(folder)
    engine = Engine(EngineOptions(model=str(folder), device=args.device, preview_max_fps=0))
    engine.load()
    engine.generate(GenerationRequest("a fox", seed=1, steps=4))
    from tui.engine.memory import sample_memory

    loaded_sd15 = sample_memory(engine.device)
    events = []
    engine.options = EngineOptions(model="demo", device=args.device, preview_max_fps=0)
    engine.load(events.append)
    unloaded = next(e for e in events if isinstance(e, Unloaded))
    loaded = next(e for e in events if isinstance(e, Loaded))
    result = {"device": device_name(engine.device)}
    for name, sample in (("SD 1.5 loaded, after a job", loaded_sd15), ("after unloading SD 1.5", unloaded.memory),
                         ("after loading the demo", loaded.memory)):
        result[name] = {"device_allocated": sample.device_allocated, "process_rss": sample.process_rss}
        print(f"{name:26} device {format_bytes(sample.device_allocated):>10}  RSS {format_bytes(sample.process_rss):>10}")
    save_result("switching.json", result)


if __name__ == "__main__":
    main()
