"""Qwen-Image (Qwen team): a 20B MMDiT flow-matching transformer with a Qwen2.5-VL 7B text encoder
and a Wan-2.1-style video VAE, and its instruction-editing models Qwen-Image-Edit and
Qwen-Image-Edit-2509/2511. Facts from diffusers' pipelines/qwenimage/ (pipeline_qwenimage.py,
_img2img.py, _inpaint.py, _edit.py, _edit_plus.py) and the Qwen-Image model card."""

from __future__ import annotations

import re
from typing import Collection, Mapping

from tui.engine.families.entry import (FLOW_EULER, FLOW_SIGMAS_SAMPLERS, TRUE_CFG, Defaults, Family, Guidance, Lora,
                                       LoraLayers, Pipelines, Precision, Recognise, SingleFile, TextEncoder, Variant,
                                       layers_named)

QWEN_IMAGE = "qwen_image"
QWEN_IMAGE_EDIT = "qwen_image_edit"
QWEN_IMAGE_EDIT_PLUS = "qwen_image_edit_plus"

# The transformer's tensor names as ComfyUI's qwen_image files (and diffusers' QwenImageTransformer2DModel,
# whose names they are) have them: image and text inputs, the text norm, a block's image modulation.
_CHECKPOINT_KEYS = ("img_in.weight", "txt_in.weight", "txt_norm.weight", "transformer_blocks.0.img_mod.1.weight")
_PREFIXES = ("", "model.diffusion_model.")


def is_qwen_image_checkpoint(keys: Collection[str]) -> bool:
    """Qwen-Image's transformer in one file, bare or under ComfyUI's "model.diffusion_model." prefix.
    FLUX.1's and FLUX.2's original files share img_in/txt_in but have double_blocks and no txt_norm
    nor transformer_blocks; FLUX.1 in diffusers' names has transformer_blocks.N.norm1 but no
    img_mod, img_in or txt_norm; SD3 has joint_blocks, Z-Image layers and cap_embedder."""
    return any(all(prefix + key in keys for key in _CHECKPOINT_KEYS)
               and prefix + "double_blocks.0.img_attn.qkv.weight" not in keys for prefix in _PREFIXES)


def _base_repo(_shapes: Mapping[str, tuple[int, ...]], _lightning: bool) -> str:
    return "Qwen/Qwen-Image"  # Lightning merges keep its architecture and components


# 50 steps, true_cfg_scale 4.0 (pipeline_qwenimage.py __call__ defaults); 1328x1328 is the model card's 1:1 size.
_DEFAULTS = Defaults(1328, 50, 4.0, FLOW_EULER)
# True CFG: on when true_cfg_scale > 1 *and* a negative prompt is given (pipeline_qwenimage.py, do_true_cfg);
# the engine sends " " for an empty negative prompt, as the pipeline's docs say. guidance_scale is read only by
# guidance-distilled transformers (guidance_embeds=True), which the released models are not.
_GUIDANCE = Guidance(TRUE_CFG, "true_cfg_scale", 1.0)
# Qwen2.5-VL 7B (hidden size 3584 = the transformer's joint_attention_dim), its prompt in a chat template;
# the embeddings are cut to max_sequence_length, 512 by default (1024 at most) (pipeline_qwenimage.py).
_ENCODERS = (TextEncoder("text_encoder", "tokenizer", "qwen2.5-vl", 512, 3584),)
# Its VAE is Wan 2.1's layout: 16 channels, normalised by latents_mean/latents_std; ComfyUI previews Qwen-Image
# with its Wan21 latent format.
_LATENT_FORMAT = "wan21"


def _qwen_image_lora(layers: LoraLayers) -> bool:
    """A LoRA of its attention alone, named as FLUX.1's and SD3's blocks are in diffusers, told by its blocks:
    Qwen-Image has 60, FLUX.1 19 double blocks (and single ones), SD 3.5 Large 38."""
    numbers = [int(match[1]) for layer in layers_named(layers, "transformer_blocks.N")
               if (match := re.match(r"transformer_blocks[._](\d+)", layer))]
    return bool(numbers) and max(numbers) >= 38 and not layers_named(layers, "single_transformer_blocks")


# LoRAs on the transformer only (diffusers' QwenImageLoraLoaderMixin converts kohya and ComfyUI names, which are
# diffusers' own here). Its blocks' image and text MLPs and modulations are named as no other family's.
_LORA = Lora("QwenImageLoraLoaderMixin", label="Qwen-Image",
             layers=("transformer_blocks.N.img_mlp", "transformer_blocks.N.txt_mlp", "transformer_blocks.N.img_mod",
                     "transformer_blocks.N.txt_mod"),
             fits=_qwen_image_lora)
# Published in bfloat16; its transformer overflows to NaN (black images) in float16 (Comfy-Org/ComfyUI#10751,
# leejet/stable-diffusion.cpp#1249).
_PRECISION = Precision("bfloat16", False, "Qwen-Image in float16 gives black (NaN) images: Comfy-Org/ComfyUI#10751")
_JOB_MEMORY_GB = 7.6  # Qwen-Image at 1328x1328, bfloat16, H200 peak minus weights (the edit models: at most this)

FAMILIES: tuple[Family, ...] = (
    Family(
        id=QWEN_IMAGE, label="Qwen-Image",
        pipelines=Pipelines("QwenImagePipeline", "QwenImageImg2ImgPipeline"),
        recognise=Recognise(("QwenImagePipeline", "QwenImageImg2ImgPipeline", "QwenImageInpaintPipeline"),
                            checkpoint=is_qwen_image_checkpoint,
                            gguf_architectures=("qwen_image",)),  # city96/ComfyUI-GGUF's IMG_ARCH_LIST
        defaults=_DEFAULTS, guidance=_GUIDANCE, negative_prompt=True, encoders=_ENCODERS,
        latent_format=_LATENT_FORMAT, lora=_LORA, samplers=FLOW_SIGMAS_SAMPLERS, passes_mu=True,
        # Lightning (lightx2v/Qwen-Image-Lightning's model card): distilled to 8 (or 4) steps at true_cfg_scale
        # 1.0, that is without CFG; merged checkpoints carry "Lightning" in their names.
        variants=(Variant("turbo", "Lightning", "lightning", Defaults(1328, 8, 1.0, FLOW_EULER)),),
        precision=_PRECISION, job_memory_gb=_JOB_MEMORY_GB,
        # Its single files are the transformer in diffusers' own names (diffusers maps them unchanged).
        single_file=SingleFile("QwenImageTransformer2DModel", _base_repo)),
    # The editing models load their edit pipeline (it takes the image to edit as image=, and cannot run without
    # one), which is also the one they run; they have no text-to-image or image-to-image pipeline of their own.
    Family(
        id=QWEN_IMAGE_EDIT, label="Qwen-Image-Edit",
        pipelines=Pipelines("QwenImageEditPipeline", None, edit="QwenImageEditPipeline", edit_only=True),
        recognise=Recognise(("QwenImageEditPipeline", "QwenImageEditInpaintPipeline")),
        # 50 steps, true_cfg_scale 4.0 (__call__'s defaults); the output is ~1 MP at the input's aspect when no
        # size is given (calculate_dimensions(1024 * 1024, ...) in __call__).
        defaults=Defaults(1024, 50, 4.0, FLOW_EULER), guidance=_GUIDANCE, negative_prompt=True, encoders=_ENCODERS,
        latent_format=_LATENT_FORMAT, lora=_LORA, samplers=FLOW_SIGMAS_SAMPLERS, passes_mu=True,
        precision=_PRECISION, job_memory_gb=_JOB_MEMORY_GB),
    # Qwen-Image-Edit-2509 and -2511: several reference images (pipeline_qwenimage_edit_plus.py).
    Family(
        id=QWEN_IMAGE_EDIT_PLUS, label="Qwen-Image-Edit-2509/2511",
        pipelines=Pipelines("QwenImageEditPlusPipeline", None, edit="QwenImageEditPlusPipeline", edit_only=True),
        recognise=Recognise(("QwenImageEditPlusPipeline",)),
        # ~1 MP output as Edit's; 40 steps at true_cfg_scale 4.0 in the Qwen-Image-Edit-2509 model card's example.
        defaults=Defaults(1024, 40, 4.0, FLOW_EULER), guidance=_GUIDANCE, negative_prompt=True, encoders=_ENCODERS,
        latent_format=_LATENT_FORMAT, lora=_LORA, samplers=FLOW_SIGMAS_SAMPLERS, passes_mu=True,
        precision=_PRECISION, job_memory_gb=_JOB_MEMORY_GB),
)
