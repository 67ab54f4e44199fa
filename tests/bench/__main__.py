"""Every benchmark in one command, with a table of figures against their targets.

Run: python -m tests.bench [--repeats N] [--gpu]

Without --gpu: the demo model on this machine's CPU (overhead, memory, second job) and
the installed ``sdtui`` in a pseudo-terminal (start-up, key latency, bytes).
With --gpu: an SD 1.5-architecture pipeline in float16 on CUDA (overhead, memory, second
job); the terminal figures do not depend on the GPU and are skipped.
Writes each benchmark's JSON and bench-results/summary.json.
"""

from __future__ import annotations

import argparse

from tests.bench import memory, overhead, save_result, terminal


def targets(results: dict, gpu: bool) -> list[tuple[str, str, str, bool]]:
    rows = []
    over = results["overhead"]
    limit = 1.02 if gpu else 1.03
    rows.append(("engine vs bare pipe()", f"{over['engine_ratio']:.3f}", f"<= {limit}", over["engine_ratio"] <= limit))
    for label, figures in over["app"].items():
        rows.append((f"app {label}: Enter to image shown vs bare", f"{figures['shown_ratio']:.3f}", f"<= {limit}",
                     figures["shown_ratio"] <= limit))
        rows.append((f"app {label}: Enter to image saved vs bare", f"{figures['saved_ratio']:.3f}", "(reported)",
                     True))
    mem = results["memory"]
    rows.append(("peak RSS, sdtui generate vs bare script", f"{mem['memory']['ratio']:.3f}", "<= 1.05",
                 mem["memory"]["ratio"] <= 1.05))
    second = mem["second_job"]
    rows.append(("second job: call to first step vs bare", f"{second['ratio']:.3f}", "(reported)", True))
    if "terminal" in results:
        term = results["terminal"]
        rows.append(("start-up to first frame", f"{term['startup']['first_frame_s']:.3f} s", "<= 0.5 s",
                     term["startup"]["first_frame_s"] <= 0.5))
        rows.append(("key press to screen while generating, p95", f"{term['responsiveness']['p95_ms']:.1f} ms",
                     "<= 50 ms", term["responsiveness"]["p95_ms"] <= 50))
        for band in term["bandwidth"]:
            ok = band["bytes_per_second"] <= 100 * 1024 or band["terminal"] != "200x60" or not band["previews"]
            rows.append((f"bytes/s at {band['terminal']}, previews {'on' if band['previews'] else 'off'}",
                         f"{band['bytes_per_second'] / 1024:.1f} KB/s",
                         "<= 100 KB/s" if band["terminal"] == "200x60" and band["previews"] else "(reported)", ok))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gpu", action="store_true")
    args = parser.parse_args()
    model, device = ("sd15", "cuda") if args.gpu else ("demo", "cpu")
    results = {"overhead": overhead.run(model, device, args.repeats, None, 512)}
    print(overhead.report(results["overhead"]), flush=True)
    results["memory"] = memory.run(model, device, max(2, args.repeats // 2))
    print(memory.report(results["memory"]), flush=True)
    if not args.gpu:
        results["terminal"] = {"startup": terminal.measure_startup(args.repeats),
                               "responsiveness": terminal.measure_responsiveness(6 * args.repeats),
                               "bandwidth": [terminal.measure_bandwidth(c, r, p, args.repeats)
                                             for c, r, p in ((100, 30, True), (200, 60, True), (200, 60, False))]}
        print(terminal.report(results["terminal"]), flush=True)
    rows = targets(results, args.gpu)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':{width}}  {'figure':>12}  {'target':>12}")
    for name, figure, target, ok in rows:
        print(f"{name:{width}}  {figure:>12}  {target:>12}  {'' if ok else 'MISSED'}")
    summary = {"targets": [dict(zip(("measure", "figure", "target", "met"), r)) for r in rows], **results}
    save_result(f"summary-{model}.json", summary)


if __name__ == "__main__":
    main()
