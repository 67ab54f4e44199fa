"""``sdtui generate`` against a warm server and a cold one, and what an idle server holds.

Run: python -m tests.bench.server [--repeats N] [--size 256] [--steps 10] [--smoke]

cold  the whole ``sdtui generate`` process with no server running: it starts one, which
      imports torch and loads the model, then makes the image;
warm  the same command while the server holds the model (the client imports no torch);
idle  the server's RSS with the model loaded, and after keep_alive has unloaded it.
Each run has its own sdtui home and runtime folder. ``--smoke``: one repeat at 64x64, 2 steps.
Writes bench-results/server.json.
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

COMMAND_DEADLINE_S = 300


def _sdtui() -> list[str]:
    script = Path(sys.executable).parent / "sdtui"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tui"]


def _run(argv: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    try:
        done = subprocess.run(_sdtui() + argv, capture_output=True, text=True, env=env, timeout=COMMAND_DEADLINE_S)
    except subprocess.TimeoutExpired:
        raise BenchTimeout(f"benchmark: sdtui {argv[0]} did not finish within {COMMAND_DEADLINE_S} s") from None
    if done.returncode != 0:
        raise RuntimeError(f"sdtui {' '.join(argv[:2])} exited {done.returncode}: {done.stderr[-500:]}")
    return time.perf_counter() - began


def _rss_of_server(home: Path, runtime: Path) -> int:
    import psutil

    from tui.client.connection import server_pid

    outer = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)  # where this run's servers listen
    try:
        pid = server_pid(home)
    finally:
        if outer is None:
            os.environ.pop("XDG_RUNTIME_DIR")
        else:
            os.environ["XDG_RUNTIME_DIR"] = outer
    if pid is None:
        raise RuntimeError("the server wrote no pid file")
    return psutil.Process(pid).memory_info().rss


def run(repeats: int = 5, size: int = 256, steps: int = 10, smoke: bool = False) -> dict:
    if smoke:
        repeats, size, steps = 1, 64, 2
    work = Path(tempfile.mkdtemp(prefix="sdtui-server-bench-"))
    job = ["generate", "a red fox", "--demo", "--seed", "7", "--steps", str(steps), "--width", str(size),
           "--height", str(size)]
    cold, warm = [], []
    for n in range(repeats):
        home = work / f"home-{n}"
        env = {**os.environ, "SDTUI_HOME": str(home), "XDG_RUNTIME_DIR": str(work), "SDTUI_KEEP_ALIVE": "2s",
               "SDTUI_IDLE_EXIT": "5m", "HF_HUB_OFFLINE": "1"}
        cold.append(_run(job, env))
        warm.append(_run(job, env))
        if n == 0:
            loaded = _rss_of_server(home.resolve(), work)
            deadline = time.monotonic() + 30
            status = ""
            while "model: none loaded" not in status and time.monotonic() < deadline:
                time.sleep(0.5)
                status = subprocess.run(_sdtui() + ["status"], capture_output=True, text=True, env=env,
                                        timeout=30).stdout
            if "model: none loaded" not in status:
                raise BenchTimeout("benchmark: the server did not unload the model within 30 s of keep_alive 2 s")
            idle = _rss_of_server(home.resolve(), work)
        _run(["stop"], env)
    result = {"size": size, "steps": steps, "repeats": repeats,
              "cold_s": round(statistics.median(cold), 3), "warm_s": round(statistics.median(warm), 3),
              "warm_vs_cold": round(statistics.median(warm) / statistics.median(cold), 3),
              "server_rss_loaded_mib": round(loaded / 2**20, 1), "server_rss_idle_mib": round(idle / 2**20, 1),
              "runs": {"cold": cold, "warm": warm}}
    save_result("server.json", result)
    return result


def report(result: dict) -> str:
    return "\n".join([
        f"sdtui generate, demo model {result['size']}x{result['size']}, {result['steps']} steps "
        f"(median of {result['repeats']}):",
        f"  cold (starts the server)  {result['cold_s']:7.3f} s",
        f"  warm (server holds model) {result['warm_s']:7.3f} s   ratio {result['warm_vs_cold']:.3f}",
        f"  server RSS: {result['server_rss_loaded_mib']:.1f} MiB with the model, "
        f"{result['server_rss_idle_mib']:.1f} MiB after keep_alive unloaded it",
    ])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="one repeat at 64x64, 2 steps")
    args = parser.parse_args()
    print(report(run(args.repeats, args.size, args.steps, args.smoke)))


if __name__ == "__main__":
    main()
