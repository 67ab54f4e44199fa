"""GGUF files of tiny random-weight transformers, laid out as city96/ComfyUI-GGUF's tools/convert.py and its
llama.cpp quantizer lay them out: ``general.architecture`` of the model's kind, the transformer's tensors
under their single-file names without ComfyUI's prefix, one-dimensional and small tensors (1024 weights or
fewer) in F32, the rest quantized, falling back to F16 where a row does not split into the type's blocks.

The tiny pipelines' transformers are widened (64 channels, not 32) so that most of their layers pass
1024 weights and are quantized, as a real model's are; everything else is the tiny pipelines' own.
"""

from __future__ import annotations

from pathlib import Path

QUANTIZATION_THRESHOLD = 1024  # convert.py: tensors of this many weights or fewer stay F32


def wide_flux_pipeline():
    """tests/tiny_flux.py's dev-like FluxPipeline with a transformer 64 channels wide (2 heads of 32)."""
    import torch
    from diffusers import FluxPipeline, FluxTransformer2DModel

    from tests.tiny_flux import tiny_flux_components

    components = tiny_flux_components()
    torch.manual_seed(1)
    components["transformer"] = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=32,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[8, 12, 12],
        guidance_embeds=True).eval()
    pipe = FluxPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def wide_z_image_pipeline():
    """tests/tiny_models.py's ZImagePipeline with a transformer 64 channels wide (2 heads of 32)."""
    import torch
    from diffusers import ZImagePipeline

    from tests.tiny_models import build_tiny_z_image, z_image_transformer

    components = build_tiny_z_image().components
    torch.manual_seed(1)
    components["transformer"] = z_image_transformer(dim=64, heads=2, axes_dims=(16, 8, 8))
    pipe = ZImagePipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_gguf(state: dict, path: Path, architecture: str, quantization: str) -> Path:
    """``state`` (name -> float tensor) written as a GGUF file of ``architecture`` whose large tensors are
    quantized to ``quantization`` ("Q8_0", "Q4_0", "Q5_0": the types gguf-py can quantize)."""
    import gguf
    import numpy as np

    qtype = gguf.GGMLQuantizationType[quantization]
    writer = gguf.GGUFWriter(path=None, arch=architecture)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_file_type(getattr(gguf.LlamaFileType, f"MOSTLY_{quantization}"))
    for name, tensor in state.items():
        data = tensor.detach().float().contiguous().numpy()
        kind = gguf.GGMLQuantizationType.F32 if data.ndim == 1 or data.size <= QUANTIZATION_THRESHOLD else qtype
        try:
            stored = gguf.quants.quantize(data, kind)
        except gguf.QuantError:  # a row that does not split into the type's blocks
            kind, stored = gguf.GGMLQuantizationType.F16, data.astype(np.float16)
        writer.add_tensor(name, stored, raw_dtype=kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file(path=path)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def dequantized(path: Path) -> dict:
    """The GGUF file's tensors as float32, each dequantized by gguf-py (numpy, exact in float32)."""
    import gguf
    import torch

    reader = gguf.GGUFReader(path)
    out = {}
    for tensor in reader.tensors:
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        shape = tuple(int(size) for size in reversed(tensor.shape.tolist()))
        out[tensor.name] = torch.from_numpy(values.astype("float32").reshape(shape).copy())
    return out


def z_image_hub_repositories(root: Path, file: str) -> tuple[Path, Path]:
    """Folders of two Hub repositories: a GGUF one as city96's or jayn7's are laid out (``file``, a Q8_0 file of
    the wide Z-Image-Turbo transformer, beside another quantization and a README), and its base, the whole
    pipeline. Returns (the GGUF repository's folder, the base's)."""
    from tests.tiny_models import z_image_to_original

    pipe = wide_z_image_pipeline()
    pipe.save_pretrained(root / "base")
    save_gguf(z_image_to_original(pipe.transformer.state_dict()), root / "gguf" / file, "lumina2", "Q8_0")
    (root / "gguf" / "z_image_turbo-Q4_0.gguf").write_bytes(b"another quantization")
    (root / "gguf" / "README.md").write_text("a tiny Z-Image-Turbo transformer in GGUF")
    return root / "gguf", root / "base"
