"""Live previews: a cheap RGB picture of the latents at a step, with no VAE decode.

Each latent channel maps linearly to RGB. The factors per latent format are the
published approximations (as in ComfyUI's latent formats): SD 1.x/2.x share one set,
SDXL has its own with a bias, FLUX.1's 16-channel VAE (Z-Image's too) another, FLUX.2's
32-channel one another, Wan 2.1's (Qwen-Image's) another. The product runs on the device; only a
small (width/8 x height/8) image comes back to the CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

LATENT_RGB = {
    "sd": {
        "factors": ((0.3512, 0.2297, 0.3227),
                    (0.3250, 0.4974, 0.2350),
                    (-0.2829, 0.1762, 0.2721),
                    (-0.2120, -0.2616, -0.7177)),
        "bias": (0.0, 0.0, 0.0),
    },
    "sdxl": {
        "factors": ((0.3651, 0.4232, 0.4341),
                    (-0.2533, -0.0042, 0.1068),
                    (0.1076, 0.1111, -0.0362),
                    (-0.3165, -0.2492, -0.2188)),
        "bias": (0.1084, -0.0175, -0.0011),
    },
    # FLUX.1's 16-channel VAE (also Z-Image's); ComfyUI's comfy/latent_formats.py, class Flux.
    "flux": {
        "factors": ((-0.0346, 0.0244, 0.0681), (0.0034, 0.0210, 0.0687), (0.0275, -0.0668, -0.0433),
                    (-0.0174, 0.0160, 0.0617), (0.0859, 0.0721, 0.0329), (0.0004, 0.0383, 0.0115),
                    (0.0405, 0.0861, 0.0915), (-0.0236, -0.0185, -0.0259), (-0.0245, 0.0250, 0.1180),
                    (0.1008, 0.0755, -0.0421), (-0.0515, 0.0201, 0.0011), (0.0428, -0.0012, -0.0036),
                    (0.0817, 0.0765, 0.0749), (-0.1264, -0.0522, -0.1103), (-0.0280, -0.0881, -0.0499),
                    (-0.1262, -0.0982, -0.0778)),
        "bias": (-0.0329, -0.0718, -0.0851),
    },
    # SD3 and 3.5's 16-channel VAE; ComfyUI's comfy/latent_formats.py, class SD3.
    "sd3": {
        "factors": ((-0.0922, -0.0175, 0.0749), (0.0311, 0.0633, 0.0954), (0.1994, 0.0927, 0.0458),
                    (0.0856, 0.0339, 0.0902), (0.0587, 0.0272, -0.0496), (-0.0006, 0.1104, 0.0309),
                    (0.0978, 0.0306, 0.0427), (-0.0042, 0.1038, 0.1358), (-0.0194, 0.0020, 0.0669),
                    (-0.0488, 0.0130, -0.0268), (0.0922, 0.0988, 0.0951), (-0.0278, 0.0524, -0.0542),
                    (0.0332, 0.0456, 0.0895), (-0.0069, -0.0030, -0.0810), (-0.0596, -0.0465, -0.0293),
                    (-0.1448, -0.1463, -0.1189)),
        "bias": (0.2394, 0.2135, 0.1925),
    },
    # FLUX.2's 32-channel VAE (dev and klein); ComfyUI's comfy/latent_formats.py, class Flux2. Its
    # factors read the transformer's latents as they are (process_in is the identity: batch-normalised,
    # as FLUX.2's VAE encodes them), 2x2 patches unpatchified to 32 channels at twice the grid
    # (latent_rgb_factors_reshape), which is what spatial() makes of the packed (b, tokens, 128).
    "flux2": {
        "factors": ((0.0058, 0.0113, 0.0073), (0.0495, 0.0443, 0.0836), (-0.0099, 0.0096, 0.0644),
                    (0.2144, 0.3009, 0.3652), (0.0166, -0.0039, -0.0054), (0.0157, 0.0103, -0.0160),
                    (-0.0398, 0.0902, -0.0235), (-0.0052, 0.0095, 0.0109), (-0.3527, -0.2712, -0.1666),
                    (-0.0301, -0.0356, -0.0180), (-0.0107, 0.0078, 0.0013), (0.0746, 0.0090, -0.0941),
                    (0.0156, 0.0169, 0.0070), (-0.0034, -0.0040, -0.0114), (0.0032, 0.0181, 0.0080),
                    (-0.0939, -0.0008, 0.0186), (0.0018, 0.0043, 0.0104), (0.0284, 0.0056, -0.0127),
                    (-0.0024, -0.0022, -0.0030), (0.1207, -0.0026, 0.0065), (0.0128, 0.0101, 0.0142),
                    (0.0137, -0.0072, -0.0007), (0.0095, 0.0092, -0.0059), (0.0000, -0.0077, -0.0049),
                    (-0.0465, -0.0204, -0.0312), (0.0095, 0.0012, -0.0066), (0.0290, -0.0034, 0.0025),
                    (0.0220, 0.0169, -0.0048), (-0.0332, -0.0457, -0.0468), (-0.0085, 0.0389, 0.0609),
                    (-0.0076, 0.0003, -0.0043), (-0.0111, -0.0460, -0.0614)),
        "bias": (-0.0329, -0.0718, -0.0851),
    },
    # Wan 2.1's 16-channel video VAE (Qwen-Image's); ComfyUI's comfy/latent_formats.py, class Wan21. ComfyUI
    # applies them to latents after its process_in, (z - latents_mean) / latents_std: the normalised latents
    # Qwen-Image's pipelines denoise and hand their step callbacks, so they apply as they are.
    "wan21": {
        "factors": ((-0.1299, -0.1692, 0.2932), (0.0671, 0.0406, 0.0442), (0.3568, 0.2548, 0.1747),
                    (0.0372, 0.2344, 0.1420), (0.0313, 0.0189, -0.0328), (0.0296, -0.0956, -0.0665),
                    (-0.3477, -0.4059, -0.2925), (0.0166, 0.1902, 0.1975), (-0.0412, 0.0267, -0.1364),
                    (-0.1293, 0.0740, 0.1636), (0.0680, 0.3019, 0.1128), (0.0032, 0.0581, 0.0639),
                    (-0.1251, 0.0927, 0.1699), (0.0060, -0.0633, 0.0005), (0.3477, 0.2275, 0.2950),
                    (0.1984, 0.0913, 0.1861)),
        "bias": (-0.1835, -0.0868, -0.3360),
    },
}


@dataclass
class PreviewThrottle:
    """At most one preview per ``interval`` steps and per 1/``max_fps`` seconds."""

    interval: int = 1
    max_fps: float = 4.0
    _last_time: float = float("-inf")

    def reset(self) -> None:
        self._last_time = float("-inf")

    def due(self, step_index: int, now: float | None = None) -> bool:
        if self.interval < 1 or (step_index + 1) % self.interval:
            return False
        now = time.monotonic() if now is None else now
        if self.max_fps > 0 and now - self._last_time < 1.0 / self.max_fps:
            return False
        self._last_time = now
        return True


def spatial(latents, width: int, height: int):
    """Latents as (batch, channels, h, w), from the layouts pipelines hand their step callbacks:
    that one already; video-shaped (batch, channels, frames, h, w), Qwen-Image's VAE, as its first
    frame; and packed 2x2 patches, (batch, h/2 * w/2, channels * 4) as FLUX.1, FLUX.2 and
    Qwen-Image pack them (channel c of patch cell (dy, dx) at c * 4 + dy * 2 + dx). ``width`` and
    ``height`` are the pass's pixel size, whose shape the patch grid has. None when the tokens do
    not make a grid of that shape."""
    if latents.ndim == 5:
        return latents[:, :, 0]
    if latents.ndim != 3:
        return latents
    batch, tokens, packed = latents.shape
    rows = max(1, round((tokens * height / max(width, 1)) ** 0.5))
    cols = tokens // rows
    if rows * cols != tokens or packed % 4:
        return None
    channels = packed // 4
    return (latents.reshape(batch, rows, cols, channels, 2, 2).permute(0, 3, 1, 4, 2, 5)
            .reshape(batch, channels, rows * 2, cols * 2))


class LatentPreviewer:
    def __init__(self, latent_format: str):
        self.latent_format = latent_format
        self._cache: dict[tuple[Any, Any], tuple[Any, Any]] = {}

    def _weights(self, device, dtype):
        key = (device, dtype)
        if key not in self._cache:
            import torch

            spec = LATENT_RGB[self.latent_format]
            self._cache[key] = (torch.tensor(spec["factors"], device=device, dtype=dtype),
                                torch.tensor(spec["bias"], device=device, dtype=dtype))
        return self._cache[key]

    def to_image(self, latents, width: int, height: int):
        """RGB PIL image of the first latent of a batch, in any layout ``spatial`` reads (None
        for one it cannot); ``width`` and ``height``: the pass's size in pixels."""
        import torch
        from PIL import Image

        latents = spatial(latents, width, height)
        if latents is None:
            return None
        with torch.no_grad():
            sample = latents[0].float()
            factors, bias = self._weights(sample.device, sample.dtype)
            rgb = torch.einsum("chw,cr->hwr", sample[: factors.shape[0]], factors) + bias
            rgb = ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
        return Image.fromarray(rgb)
