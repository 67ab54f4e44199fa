"""Every benchmark in one command, with a table of figures against their targets.

Run: python -m tests.bench [--repeats N] [--gpu] [--smoke]

Without --gpu: the demo model on this machine's CPU (overhead, memory, second job, image-to-image) and
the installed ``sdtui`` in a pseudo-terminal (start-up, key latency, bytes).
With --gpu: an SD 1.5-architecture pipeline in float16 on CUDA (overhead, memory, second
job); the terminal figures do not depend on the GPU and are skipped.
``--smoke`` runs every benchmark module once at a tiny size (also model switching and the
history at scale), to prove none of them hangs or crashes; its figures are not compared with
the targets. Writes each benchmark's JSON and bench-results/summary.json.
"""

from __future__ import annotations

import argparse

from tests.bench import (colour, families, history_scale, img2img, memory, memory_fit, nf4_check, overhead,
                         save_result, sdnq_check, server, switching, terminal)


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
        start = term["startup"]
        rows.append(("start-up to first frame", f"{start['first_frame_s']:.3f} s", "<= 0.5 s",
                     start["first_frame_s"] <= 0.5))
        rows.append(("first frame vs a minimal Textual app's", f"{start['first_frame_ratio']:.2f}", "<= 1.5",
                     start["first_frame_ratio"] <= 1.5))
        rows.append(("key press to screen while generating, p95", f"{term['responsiveness']['p95_ms']:.1f} ms",
                     "<= 50 ms", term["responsiveness"]["p95_ms"] <= 50))
        for q in term["quit"]:
            rows.append((f"Ctrl+Q to the shell, {'while generating' if q['generating'] else 'idle'}, median",
                         f"{q['median_s']:.3f} s", "<= 1 s", q["median_s"] <= 1.0))
        for band in term["bandwidth"]:
            ok = band["bytes_per_second"] <= 100 * 1024 or band["terminal"] != "200x60" or not band["previews"]
            rows.append((f"bytes/s at {band['terminal']}, previews {'on' if band['previews'] else 'off'}",
                         f"{band['bytes_per_second'] / 1024:.1f} KB/s",
                         "<= 100 KB/s" if band["terminal"] == "200x60" and band["previews"] else "(reported)", ok))
    if "img2img" in results:
        i2i = results["img2img"]
        half_unet = i2i["unet_bytes"] / 2
        rows.append(("img2img peak over txt2img (a second UNet adds its size)",
                     f"{i2i['img2img_extra'] / 1024**2:+.0f} MiB", f"< {half_unet / 1024**2:.0f} MiB",
                     i2i["every_component_shared"] and i2i["img2img_extra"] < half_unet))
        rows.append(("hires fix peak over txt2img at its size", f"{i2i['hires_extra'] / 1024**2:+.0f} MiB",
                     f"< {half_unet / 1024**2:.0f} MiB", i2i["hires_extra"] < half_unet))
    if "server" in results:
        rows.append(("sdtui generate, warm server vs cold", f"{results['server']['warm_vs_cold']:.3f}",
                     "(reported)", True))
    if "colour" in results:
        seen = {name: modes["256: CIELAB + ordered dither"]["seen"] / modes["256: Rich's downgrade"]["seen"]
                for name, modes in results["colour"]["delta_e"].items()}
        worst = max(seen.values())
        rows.append(("256 colours: error as seen, sdtui vs Rich's downgrade (worst)", f"{worst:.2f}", "< 1",
                     worst < 1))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="every benchmark once, tiny, figures not judged")
    args = parser.parse_args()
    model, device = ("sd15", "cuda") if args.gpu else ("demo", "cpu")
    if args.smoke:
        smoke(model, device, args.gpu)
        return
    results = {"overhead": overhead.run(model, device, args.repeats, None, 512)}
    print(overhead.report(results["overhead"]), flush=True)
    results["memory"] = memory.run(model, device, max(2, args.repeats // 2))
    print(memory.report(results["memory"]), flush=True)
    results["img2img"] = img2img.run(model, device)
    print(img2img.report(results["img2img"]), flush=True)
    if not args.gpu:
        results["terminal"] = terminal.run(args.repeats)
        print(terminal.report(results["terminal"]), flush=True)
        results["colour"] = colour.run(repeats=args.repeats)
        print(colour.report(results["colour"]), flush=True)
        results["server"] = server.run(args.repeats)
        print(server.report(results["server"]), flush=True)
    print_targets(results, args.gpu)
    save_result(f"summary-{model}.json", {"targets": [dict(zip(("measure", "figure", "target", "met"), r))
                                                      for r in targets(results, args.gpu)], **results})


def smoke(model: str, device: str, gpu: bool) -> None:
    size, steps = overhead.SMOKE["size"], overhead.SMOKE["steps"]
    results = {"overhead": overhead.run(model, device, 1, steps, size)}
    print(overhead.report(results["overhead"]), flush=True)
    results["memory"] = memory.run(model, device, 1, steps=steps, size=size)
    print(memory.report(results["memory"]), flush=True)
    results["img2img"] = img2img.run(model, device, smoke=True)
    print(img2img.report(results["img2img"]), flush=True)
    switching.run(device, smoke=True)
    if not gpu:
        families.run(list(families.ARCHITECTURES), "cpu", 1, smoke=True)
        memory_fit.run(list(families.ARCHITECTURES), "cpu", 1, smoke=True)
        nf4_check.run("cpu", False, 1, smoke=True)
        sdnq_check.run(["zimage"], ["uint4"], "cpu", 1, smoke=True)
        results["terminal"] = terminal.run(1, smoke=True)
        print(terminal.report(results["terminal"]), flush=True)
        history_scale.run(300, 1)
        print(colour.report(colour.run(smoke=True)), flush=True)
        print(server.report(server.run(smoke=True)), flush=True)
    print_targets(results, gpu, judged=False)
    print("smoke run: every benchmark ran; figures at this size are not compared with the targets")


def print_targets(results: dict, gpu: bool, judged: bool = True) -> None:
    rows = targets(results, gpu)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':{width}}  {'figure':>12}  {'target':>12}")
    for name, figure, target, ok in rows:
        verdict = "" if ok or not judged else "MISSED"
        print(f"{name:{width}}  {figure:>12}  {target if judged else '(smoke)':>12}  {verdict}")


if __name__ == "__main__":
    main()
