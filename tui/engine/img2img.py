"""Image-to-image and hires fix: the arithmetic of strength and upscaling, and reading the
source image. The pipeline itself is the loaded one's image-to-image sibling, built with
diffusers' ``from_pipe`` on the same components (no second copy of any weights).

- img2img: the source, resized to the request's size, is noised to ``strength`` and denoised
  for ``int(steps * strength)`` steps (diffusers' rule), so 0.5 keeps the composition and 1.0
  keeps almost nothing.
- hires fix, as A1111's: an image (the source, or the job's own first pass) is upscaled by
  ``hires`` with Lanczos, then denoised again at a low strength to add detail at the new size.
"""

from __future__ import annotations

from pathlib import Path

HIRES_UPSCALER = "Lanczos"  # A1111's name for the resampling filter it offers as an upscaler


class InitImageError(ValueError):
    """The source image cannot be used; the message is one sentence naming it."""


def steps_run(steps: int, strength: float) -> int:
    """How many denoising steps img2img runs: diffusers skips the first ``steps * (1 - strength)``."""
    return min(int(steps * strength), steps)


def hires_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """``width`` x ``height`` times ``scale``, each rounded down to a multiple of 8 (the latents' grid)."""
    return int(width * scale) // 8 * 8, int(height * scale) // 8 * 8


def load_init_image(path: str, size: tuple[int, int]):
    """The source image as RGB at ``size`` (Lanczos when it must be resized)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(Path(path).expanduser()) as opened:
            image = opened.convert("RGB")
    except FileNotFoundError:
        raise InitImageError(f"init image: {path} does not exist") from None
    except (OSError, UnidentifiedImageError) as error:
        raise InitImageError(f"init image: {path} cannot be read as an image ({error})") from None
    return image if image.size == size else image.resize(size, Image.LANCZOS)
