"""Weights in memory: what a module's take, and where on the CPU they lie."""

from __future__ import annotations

from typing import Iterable

CPU_ALIGNMENT = 64  # bytes; what PyTorch's CPU allocator gives every new tensor


def module_bytes(module) -> int:
    """The bytes of a module's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def pipeline_modules(pipe) -> dict[str, object]:
    """The pipeline's components that hold weights (torch modules), by name."""
    import torch

    return {name: c for name, c in pipe.components.items() if isinstance(c, torch.nn.Module)}


def own_aligned_memory(modules: Iterable) -> int:
    """Give every CPU weight of ``modules`` its own 64-byte-aligned memory; returns how many were moved.

    CPU matrix kernels pick their code path by the alignment of the data, and the last bits of
    a product follow the path: the same weight at an 8-byte-aligned address (where a memory-mapped
    .safetensors file puts it) and at a 64-byte-aligned one gave text embeddings 2.7e-7 apart here,
    enough to change pixels. Loading a folder maps the file; loading a single-file checkpoint
    converts into new tensors. Copying the misaligned ones makes the same model give the same
    image whichever way it was loaded. (mps and cuda copy every weight to the device anyway.)"""
    moved = 0
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.device.type == "cpu" and tensor.data_ptr() % CPU_ALIGNMENT:
                tensor.data = tensor.data.clone()
                moved += 1
    return moved
