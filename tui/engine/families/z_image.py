"""Z-Image (Tongyi-MAI): a 6B single-stream flow-matching transformer with a Qwen3 text encoder
and FLUX.1's VAE. Facts from diffusers' pipelines/z_image/pipeline_z_image.py."""

from __future__ import annotations

from tui.engine.families.entry import (CFG, FLOW_EULER, FLOW_SAMPLERS, Defaults, Family, Guidance, Lora, Pipelines,
                                       Recognise, TextEncoder, Variant)

ZIMAGE = "zimage"

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
        recognise=Recognise(("ZImagePipeline", "ZImageImg2ImgPipeline", "ZImageInpaintPipeline")),
        # Base: the pipeline's own defaults (50 steps, guidance_scale 5.0, 1024 px).
        defaults=Defaults(1024, 50, 5.0, FLOW_EULER),
        # CFG is pred = pos + g * (pos - neg), on when guidance_scale > 0: 0 is off, not 1.
        guidance=Guidance(CFG, "guidance_scale", 0.0), negative_prompt=True,
        # Qwen3 (4B: hidden size 2560); prompts are padded to max_sequence_length, 512 by default.
        encoders=(TextEncoder("text_encoder", "tokenizer", "qwen3", 512, 2560),),
        # Its VAE is FLUX.1's: 16 channels, previewed with FLUX's factors (ComfyUI's ZImage latent format).
        latent_format="flux", lora=_LORA, samplers=FLOW_SAMPLERS,
        # Turbo: 8 steps at guidance 0 (the pipeline's docstring example).
        variants=(Variant("turbo", "Turbo", "turbo", Defaults(1024, 8, 0.0, FLOW_EULER)),)),
)

