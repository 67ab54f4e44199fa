"""Pictures in a 256-colour terminal: each pixel becomes the xterm palette colour (the 6x6x6
cube and the 24-step grey ramp, indices 16-255) nearest to it as the eye sees it, which is
distance in CIELAB, not in RGB. Rich's own downgrade rounds each channel to the cube on its
own and sends near-greys to the ramp, which shifts hues and bands skin and sky; the colour
benchmark (``python -m tests.bench.colour``) prints both errors side by side.

Indices 0-15 are left out: terminals theme them freely, so their colours are unknown.
"""

from __future__ import annotations

from functools import lru_cache

CUBE_LEVELS = (0, 95, 135, 175, 215, 255)
LUT_BITS = 5  # the lookup table's grid: 32 levels a channel, far finer than the palette's steps
# Ordered dithering: a 4x4 Bayer threshold map, scaled to about half the cube's step. The
# colour benchmark measured it against plain nearest colours on gradients and a photo-like
# image, at the eye's scale (both blurred by a cell's width); see docs/performance.md for the figures.
BAYER_4 = ((0, 8, 2, 10), (12, 4, 14, 6), (3, 11, 1, 9), (15, 7, 13, 5))
DITHER_AMPLITUDE = 24.0


@lru_cache(maxsize=1)
def xterm_palette():
    """RGB of palette indices 16-255, as a (240, 3) uint8 array (row i is index 16 + i)."""
    import numpy as np

    cube = [(r, g, b) for r in CUBE_LEVELS for g in CUBE_LEVELS for b in CUBE_LEVELS]
    greys = [(8 + 10 * i,) * 3 for i in range(24)]
    return np.array(cube + greys, dtype=np.uint8)


def srgb_to_lab(rgb):
    """CIELAB (D65) of sRGB values in 0-255, any leading shape, last axis RGB."""
    import numpy as np

    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124564, 0.2126729, 0.0193339],
                             [0.3575761, 0.7151522, 0.1191920],
                             [0.1804375, 0.0721750, 0.9503041]])
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


@lru_cache(maxsize=1)
def nearest_table():
    """Palette index (16-255) nearest in CIELAB to each colour of a 32x32x32 RGB grid."""
    import numpy as np

    levels = (np.arange(1 << LUT_BITS) * 255.0 / ((1 << LUT_BITS) - 1))
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    palette = srgb_to_lab(xterm_palette())
    lab = srgb_to_lab(grid)
    best = np.empty(len(lab), dtype=np.uint8)
    for start in range(0, len(lab), 4096):  # about 8 MB of distances at a time
        chunk = lab[start:start + 4096]
        distance = ((chunk[:, None, :] - palette[None, :, :]) ** 2).sum(axis=2)
        best[start:start + 4096] = distance.argmin(axis=1) + 16
    return best.reshape((1 << LUT_BITS,) * 3)


def to_xterm256(pixels, dither: bool = False):
    """Palette indices (uint8, 16-255) for an (H, W, 3) uint8 RGB array."""
    import numpy as np

    values = pixels.astype(np.float32)
    if dither:
        height, width = values.shape[:2]
        bayer = (np.array(BAYER_4, dtype=np.float32) + 0.5) / 16 - 0.5
        threshold = np.tile(bayer, ((height + 3) // 4, (width + 3) // 4))[:height, :width]
        values = values + threshold[..., None] * DITHER_AMPLITUDE * 2
    scale = ((1 << LUT_BITS) - 1) / 255.0
    index = np.clip(np.rint(values * scale), 0, (1 << LUT_BITS) - 1).astype(np.intp)
    return nearest_table()[index[..., 0], index[..., 1], index[..., 2]]


def palette_rgb(indices):
    """The RGB each palette index (16-255) shows, for measuring what a terminal draws."""
    return xterm_palette()[indices.astype("intp") - 16]
