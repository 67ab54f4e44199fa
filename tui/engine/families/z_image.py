"""Z-Image (Tongyi-MAI): a 6B single-stream flow-matching transformer with a Qwen3 text encoder
and FLUX.1's VAE. Facts from diffusers' pipelines/z_image/pipeline_z_image.py."""

from __future__ import annotations

from typing import Collection, Mapping

from tui.engine.families.entry import (CFG, FLOW_EULER, Defaults, Family, Guidance, Lora, Pipelines, Precision,
                                       Recognise, SingleFile, TextEncoder, Variant)

ZIMAGE = "zimage"

# The transformer's tensor names in Tongyi-MAI's single files (z_image_turbo_bf16.safetensors; ComfyUI's
# prefix or none) and in diffusers' ZImageTransformer2DModel alike: a main layer's modulation (diffusers'
# CHECKPOINT_KEY_NAMES["z-image-turbo"] in loaders/single_file_utils.py) and the caption embedder's linear.
# Lumina 2, its ancestor, modulates through adaLN_modulation.1 (SiLU first).
_CHECKPOINT_KEYS = ("layers.0.adaLN_modulation.0.weight", "cap_embedder.1.weight")
_PREFIXES = ("", "model.diffusion_model.")
_TURBO_REPO = "Tongyi-MAI/Z-Image-Turbo"


def _z_image_checkpoint(keys: Collection[str]) -> bool:
    return any(all(prefix + key in keys for key in _CHECKPOINT_KEYS) for prefix in _PREFIXES)


def _base_repo(_shapes: Mapping[str, tuple[int, ...]], _turbo: bool) -> str:
    return _TURBO_REPO  # the published diffusers repository; any cached Z-Image one serves as well


# Its transformer's layer names (transformer_z_image.py): the main layers, and the refiners of the image
# and caption tokens. ComfyUI's and kohya's Z-Image LoRAs keep them ("diffusion_model.layers.0.attention.qkv",
# which lora_conversion_utils.py's _convert_non_diffusers_z_image_lora_to_diffusers splits).
_LORA = Lora("ZImageLoraLoaderMixin", label="Z-Image",
             layers=("layers.N.attention", "layers.N.feed_forward", "layers.N.adaLN_modulation", "noise_refiner.N",
                     "context_refiner.N"))

FAMILIES: tuple[Family, ...] = (
    Family(
        id=ZIMAGE, label="Z-Image",
        pipelines=Pipelines("ZImagePipeline", "ZImageImg2ImgPipeline"),
        recognise=Recognise(("ZImagePipeline", "ZImageImg2ImgPipeline", "ZImageInpaintPipeline"),
                            checkpoint=_z_image_checkpoint,
                            # city96/ComfyUI-GGUF's tools/convert.py has no Z-Image architecture: its Lumina 2
                            # test (cap_embedder.1 and context_refiner.0.attention.qkv) matches Z-Image's
                            # tensors, so Z-Image GGUF files say "lumina2" (loader.py's IMG_ARCH_LIST has no
                            # other). Lumina 2's own files say it too; their tensor names tell them apart.
                            gguf_architectures=("lumina2",)),
        # Base: the pipeline's own defaults (50 steps, guidance_scale 5.0, 1024 px).
        defaults=Defaults(1024, 50, 5.0, FLOW_EULER),
        # CFG is pred = pos + g * (pos - neg), on when guidance_scale > 0: 0 is off, not 1.
        guidance=Guidance(CFG, "guidance_scale", 0.0), negative_prompt=True,
        # Qwen3 (4B: hidden size 2560); prompts are padded to max_sequence_length, 512 by default.
        encoders=(TextEncoder("text_encoder", "tokenizer", "qwen3", 512, 2560),),
        # Its VAE is FLUX.1's: 16 channels, previewed with FLUX's factors (ComfyUI's ZImage latent format).
        latent_format="flux", lora=_LORA, passes_mu=True,
        # Its pipeline hands the scheduler its sigmas as a list (get_default_z_image_sigmas), which
        # UniPCMultistepScheduler.set_timesteps multiplies by its shift unconverted, a TypeError (diffusers 0.42).
        samplers=(FLOW_EULER,),
        # Turbo: 8 steps at guidance 0 (the pipeline's docstring example).
        variants=(Variant("turbo", "Turbo", "turbo", Defaults(1024, 8, 0.0, FLOW_EULER)),),
        # Published in bfloat16; float16 gives NaN latents, black images (Tongyi-MAI/Z-Image issue 14).
        precision=Precision("bfloat16", False, "Z-Image in float16 gives black (NaN) images: Tongyi-MAI/Z-Image#14"),
        job_memory_gb=2.8,  # Z-Image-Turbo at 1024x1024, bfloat16, H100/H200 peak minus weights
        single_file=SingleFile("ZImageTransformer2DModel", _base_repo)),
)

