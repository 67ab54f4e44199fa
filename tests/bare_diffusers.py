"""What bare diffusers makes of a saved pipeline folder, to hold sdtui's images against: the folder
loaded as it is, FlowMatch Euler on the pipeline's own scheduler config, the CPU generator seeded as
the engine seeds it (torch.Generator("cpu").manual_seed(seed)), float32 on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def bare_pipeline(folder: Path):
    """The folder's pipeline as ``from_pretrained`` loads it, with FlowMatch Euler made from its own config.

    Each weight is copied into memory of its own: from_pretrained maps the safetensors file, which
    leaves weights 8-byte aligned, and the CPU's matrix kernels pick their code path by alignment,
    so the last bits of a product (one level of a pixel of FLUX.1 Kontext's image, here) follow
    where a weight lies, not what it is. Weights made in memory, as a pipeline built in Python has
    them, are 64-byte aligned; the engine copies the mapped ones for the same reason."""
    import torch
    from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler

    pipe = DiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32)
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            for tensor in [*module.parameters(), *module.buffers()]:
                tensor.data = tensor.data.clone()
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def bare_image(pipe, prompt: str, seed: int, steps: int, width: int, height: int, **arguments) -> np.ndarray:
    """``pipe``'s first image for ``prompt``, as RGB pixels; ``arguments``: guidance and the rest."""
    import torch

    image = pipe(prompt=prompt, num_inference_steps=steps, width=width, height=height,
                 generator=torch.Generator("cpu").manual_seed(seed), **arguments).images[0]
    return np.asarray(image.convert("RGB"))
