"""How true the half-block picture's colours are in each terminal colour mode, and what a frame
costs to build, on pictures made here: smooth gradients (where banding shows) and a photo-like
landscape (sky, sun, hills, textured grass).

Each mode turns the picture into the colours a terminal would show; the error is the mean
CIE76 colour difference (delta E, about 2.3 is a just-noticeable difference) from the source,
per pixel and at the eye's scale (both blurred by about a pixel, as cells blend when seen).

Run: python -m tests.bench.colour [--size 96] [--smoke]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import Image, ImageFilter

from tests.bench import save_result
from tui.client.widgets.palette import palette_rgb, srgb_to_lab, to_xterm256


def gradient(size: int) -> Image.Image:
    """Every hue left to right, dark to light top to bottom."""
    x = np.linspace(0, 1, size)[None, :, None]
    y = np.linspace(0.1, 0.95, size)[:, None, None]
    hue = np.concatenate([np.abs(x * 6 - 3) - 1, 2 - np.abs(x * 6 - 2), 2 - np.abs(x * 6 - 4)], axis=2)
    rgb = np.clip(hue, 0, 1) * np.clip(y * 2, 0, 1) + np.clip(y * 2 - 1, 0, 1) * (1 - np.clip(hue, 0, 1))
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))


def soft_gradient(size: int) -> Image.Image:
    """A dusk sky into skin tones: the slow gradients where 256 colours band."""
    t = np.linspace(0, 1, size)[:, None, None] * np.ones((1, size, 1))
    top, bottom = np.array([70, 110, 180]), np.array([235, 190, 160])
    return Image.fromarray((top * (1 - t) + bottom * t).astype(np.uint8))


def landscape(size: int, seed: int = 3) -> Image.Image:
    """A photo-like picture: a sky gradient, a glowing sun, two ridges of hills with noisy
    edges, and grass with fine texture, slightly blurred as a lens would."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    sky = np.array([90, 140, 210]) * (1 - y[..., None]) + np.array([250, 200, 150]) * y[..., None]
    sun = np.exp(-(((x - 0.7) ** 2 + (y - 0.35) ** 2) / 0.004))[..., None]
    image = sky * (1 - sun) + np.array([255, 240, 200]) * sun
    xs = np.linspace(0, 1, size)
    ridge = 0.55 + 0.08 * np.sin(xs * 9 + 1) + 0.02 * np.convolve(rng.normal(size=size), np.ones(5) / 5, "same")
    far = y > ridge[None, :]
    image[far] = (np.array([80, 100, 120]) * (1 - (y[far] - 0.5)[:, None]))
    near = y > (0.72 + 0.05 * np.sin(xs * 5 + 3))[None, :]
    grass = np.array([60, 120, 40]) * (0.8 + 0.4 * rng.random((size, size, 1)))
    image = np.where(near[..., None], grass * (0.6 + 0.4 * (1 - y[..., None])), image)
    picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    return picture.filter(ImageFilter.GaussianBlur(0.7))


PICTURES = {"gradient": gradient, "soft gradient": soft_gradient, "landscape": landscape}


def rich_downgrade(pixels: np.ndarray, system: str) -> np.ndarray:
    """What Rich (and so Textual) sends for truecolour cells in a 256- or 16-colour terminal,
    as the RGB that terminal shows (Rich's default theme for the 16 colours)."""
    from rich.color import Color, ColorSystem
    from rich.color_triplet import ColorTriplet
    from rich.terminal_theme import DEFAULT_TERMINAL_THEME

    target = ColorSystem.EIGHT_BIT if system == "256" else ColorSystem.STANDARD
    flat = pixels.reshape(-1, 3)
    unique, inverse = np.unique(flat, axis=0, return_inverse=True)
    shown = []
    for r, g, b in unique.tolist():
        colour = Color.from_triplet(ColorTriplet(r, g, b)).downgrade(target)
        shown.append(tuple(colour.get_truecolor(DEFAULT_TERMINAL_THEME)))
    return np.array(shown, dtype=np.uint8)[inverse.reshape(-1)].reshape(pixels.shape)


def modes(pixels: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "truecolor (6 bits a channel)": pixels & 0xFC,
        "256: Rich's downgrade": rich_downgrade(pixels, "256"),
        "256: nearest in CIELAB": palette_rgb(to_xterm256(pixels)),
        "256: CIELAB + ordered dither": palette_rgb(to_xterm256(pixels, dither=True)),
        "16: Rich's downgrade": rich_downgrade(pixels, "16"),
    }


def delta_e(a: np.ndarray, b: np.ndarray, blur: float = 0.0) -> float:
    if blur:
        a = np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(blur)))
        b = np.asarray(Image.fromarray(b).filter(ImageFilter.GaussianBlur(blur)))
    return float(np.sqrt(((srgb_to_lab(a) - srgb_to_lab(b)) ** 2).sum(axis=-1)).mean())


def frame_times(picture: Image.Image, repeats: int) -> dict[str, float]:
    """Milliseconds to build one frame's cells: sdtui's numpy builder (truecolour and 256) and
    rich-pixels' half-block renderer, each to the same Rich segments a terminal line is made of."""
    import io

    from rich.console import Console
    from rich_pixels import Pixels

    from tui.client.widgets.thumbnail import half_block_rows

    console = Console(file=io.StringIO(), width=picture.width + 2, color_system="truecolor")

    def best(build) -> float:
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            build()
            times.append((time.perf_counter() - began) * 1000)
        return min(times)

    def rich_pixels_frame():
        list(console.render(Pixels.from_image(picture), console.options))

    return {"sdtui truecolor": best(lambda: half_block_rows(picture)),
            "sdtui 256 (dithered)": best(lambda: half_block_rows(picture, "256")),
            "rich-pixels": best(rich_pixels_frame)}


def run(size: int = 96, repeats: int = 5, smoke: bool = False) -> dict:
    if smoke:
        size, repeats = 24, 1
    errors = {}
    for name, make in PICTURES.items():
        pixels = np.asarray(make(size).convert("RGB"))
        errors[name] = {mode: {"per_pixel": delta_e(pixels, shown), "seen": delta_e(pixels, shown, blur=1.0)}
                        for mode, shown in modes(pixels).items()}
    times = frame_times(landscape(size), repeats)
    result = {"size": size, "delta_e": errors, "frame_ms": times}
    save_result("colour.json", result)
    return result


def report(result: dict) -> str:
    lines = [f"colour: mean delta E (CIE76) against the source, {result['size']}x{result['size']} pixels; "
             "per pixel / as seen (blurred 1 px)"]
    names = list(result["delta_e"])
    first = result["delta_e"][names[0]]
    width = max(len(mode) for mode in first)
    lines.append(f"  {'mode':{width}}  " + "  ".join(f"{name:>16}" for name in names))
    for mode in first:
        cells = [f"{result['delta_e'][n][mode]['per_pixel']:6.2f} / {result['delta_e'][n][mode]['seen']:5.2f}"
                 for n in names]
        lines.append(f"  {mode:{width}}  " + "  ".join(f"{c:>16}" for c in cells))
    times = result["frame_ms"]
    lines.append("  frame build, landscape: " + ", ".join(f"{k} {v:.2f} ms" for k, v in times.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny pictures, one repeat, figures not judged")
    args = parser.parse_args()
    print(report(run(args.size, args.repeats, args.smoke)))


if __name__ == "__main__":
    main()
