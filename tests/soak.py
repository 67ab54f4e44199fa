"""Soak: many generations through the whole headless app (prompt box, engine, previews,
history, thumbnails, log) in one process, measuring resident memory as it goes.

Run: python -m tests.soak [--generations 500] [--warmup 50]
Prints RSS after warm-up, at the end, the growth between them and the slope, and exits 1
if the growth reaches the limit (50 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time

GROWTH_LIMIT_MB = 50.0
MB = 1024 * 1024


def rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


async def soak(generations: int, warmup: int, size: int = 64, steps: int = 4) -> dict:
    from tests.app_helpers import make_app, wait_for, wait_loaded

    app = make_app(steps=steps, width=size, height=size, seed="random", preview_max_fps=0.0)
    samples: list[tuple[int, int]] = []  # (generations done, RSS)
    began = time.perf_counter()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot, app)
        prompt = app.main_screen.query_one("#prompt")
        for number in range(1, generations + 1):
            prompt.value = f"soak {number}: a red fox in the snow"
            prompt.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.history.count() >= number and not app.session.busy
                           and app.session.waiting == 0, timeout=120, what=f"generation {number}")
            samples.append((number, rss_bytes()))
        done = app.history.count_matching(status="done")
    elapsed = time.perf_counter() - began
    gc.collect()
    # The medians of ten samples around each point keep one allocator hiccup from deciding.
    after_warmup = statistics.median(rss for n, rss in samples if warmup <= n < warmup + 10)
    at_end = statistics.median(rss for _, rss in samples[-10:])
    later = [(n, rss) for n, rss in samples if n >= warmup]
    slope = _slope(later) * 100 / MB if len(later) > 2 else 0.0
    return {"generations": generations, "done": done, "warmup": warmup, "size": f"{size}x{size}", "steps": steps,
            "rss_after_warmup_mb": round(after_warmup / MB, 1), "rss_at_end_mb": round(at_end / MB, 1),
            "growth_mb": round((at_end - after_warmup) / MB, 1), "slope_mb_per_100": round(slope, 2),
            "peak_rss_mb": round(max(rss for _, rss in samples) / MB, 1), "seconds": round(elapsed, 1),
            "limit_mb": GROWTH_LIMIT_MB}


def _slope(points: list[tuple[int, int]]) -> float:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread if spread else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = parser.parse_args(argv)
    if args.warmup + 10 > args.generations:
        parser.error("--generations must exceed --warmup by at least 10")
    os.environ["SDTUI_HOME"] = tempfile.mkdtemp(prefix="sdtui-soak-")
    result = asyncio.run(soak(args.generations, args.warmup))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"soak: {result['done']}/{result['generations']} images at {result['size']}, {result['steps']} steps, "
              f"previews every step, in {result['seconds']} s")
        print(f"RSS after {result['warmup']} (warm-up): {result['rss_after_warmup_mb']} MB; at the end: "
              f"{result['rss_at_end_mb']} MB; growth {result['growth_mb']} MB (limit {GROWTH_LIMIT_MB:g}); "
              f"slope {result['slope_mb_per_100']} MB per 100 images; peak {result['peak_rss_mb']} MB")
    return 0 if result["growth_mb"] < GROWTH_LIMIT_MB and result["done"] == result["generations"] else 1


if __name__ == "__main__":
    sys.exit(main())
