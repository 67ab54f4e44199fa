"""Benchmarks that print figures against their targets; see ``python -m tests.bench``.

Every module has a smoke mode (``--smoke``: tiny size, one repeat) that ``.ci/run`` runs, so a
benchmark that hangs or crashes fails CI, and every wait in them has a deadline."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path


def save_result(name: str, result: dict) -> Path:
    """Write ``result`` as JSON to ``$OUT/name`` (``bench-results/name`` when OUT is unset)."""
    out = Path(os.environ.get("OUT", "bench-results"))
    out.mkdir(exist_ok=True)
    path = out / name
    path.write_text(json.dumps(result, indent=2))
    return path


def stop_server_of(env: dict[str, str]) -> None:
    """``sdtui stop`` for the home in ``env``: the app started a server that would otherwise
    outlive the benchmark by its idle time."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "tui", "stop"], env=env, capture_output=True, timeout=60)


class BenchTimeout(AssertionError):
    """A benchmark waited past its deadline: it fails with what it was waiting for."""


def wait_until(predicate, timeout: float, what: str, interval: float = 0.005) -> float:
    """Poll ``predicate`` until it is true; returns the time it took, or raises BenchTimeout."""
    began = time.perf_counter()
    while not predicate():
        if time.perf_counter() - began > timeout:
            raise BenchTimeout(f"benchmark: no {what} within {timeout:g} s")
        time.sleep(interval)
    return time.perf_counter() - began


async def wait_until_async(predicate, timeout: float, what: str, interval: float = 0.005) -> float:
    """``wait_until`` for code on an event loop (the headless app's)."""
    began = time.perf_counter()
    while not predicate():
        if time.perf_counter() - began > timeout:
            raise BenchTimeout(f"benchmark: no {what} within {timeout:g} s")
        await asyncio.sleep(interval)
    return time.perf_counter() - began
