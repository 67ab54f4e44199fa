"""Stable Diffusion 1.x, 2.x and XL: UNet models with CLIP text encoders, recognised by their
folders' configs or their checkpoints' tensor names (SD 1.x and 2.x share pipeline classes)."""

from __future__ import annotations

from typing import Any, Collection, Mapping

from tui.engine.families.entry import (CFG, CLIP, SD_SAMPLERS, STANDARD_GUIDANCE, STANDARD_STEPS, TURBO_GUIDANCE,
                                       TURBO_STEPS, Defaults, Family, Guidance, Lora, Pipelines, Recognise,
                                       TextEncoder, Variant)
from tui.engine.schedulers import DEFAULT_SCHEDULER

SD1, SD2, SDXL = "sd1", "sd2", "sdxl"  # registry ids

UNET_PREFIX = "model.diffusion_model."
UNET_INPUT_BLOCKS = UNET_PREFIX + "input_blocks."
# Tensor names that only one family's original (non-diffusers) checkpoints contain.
_SDXL_KEYS = ("conditioner.embedders.1.model.positional_embedding",
              "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight")
_SD2_KEY = "cond_stage_model.model.token_embedding.weight"
_SD1_KEY = "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"


def _is_list_of_1024(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(v == 1024 for v in value)


def _sdxl_folder(index: Mapping[str, Any], configs: Mapping[str, Mapping[str, Any]]) -> bool:
    unet = configs.get("unet") or {}
    return ("XL" in str(index.get("_class_name", "")) or unet.get("addition_embed_type") == "text_time"
            or "text_encoder_2" in index)


def _sd2_folder(index: Mapping[str, Any], configs: Mapping[str, Mapping[str, Any]]) -> bool:
    context = (configs.get("unet") or {}).get("cross_attention_dim")
    return not _sdxl_folder(index, configs) and (context == 1024 or _is_list_of_1024(context))


def _sd1_folder(index: Mapping[str, Any], configs: Mapping[str, Mapping[str, Any]]) -> bool:
    return not _sdxl_folder(index, configs) and not _sd2_folder(index, configs)


def _has_unet(keys: Collection[str]) -> bool:
    # The UNet's own blocks: transformer models (SD3, FLUX.1...) share the "model.diffusion_model." prefix.
    return any(key.startswith(UNET_INPUT_BLOCKS) for key in keys)


def _sdxl_checkpoint(keys: Collection[str]) -> bool:
    return _has_unet(keys) and any(key in keys for key in _SDXL_KEYS)


def _sd2_checkpoint(keys: Collection[str]) -> bool:
    return _has_unet(keys) and not _sdxl_checkpoint(keys) and _SD2_KEY in keys


def _sd1_checkpoint(keys: Collection[str]) -> bool:
    # SD 1.x text encoder key (_SD1_KEY) or none: a UNet with neither of the others' is read as SD 1.x
    return _has_unet(keys) and not _sdxl_checkpoint(keys) and not _sd2_checkpoint(keys)


_SD_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline")
_SDXL_PIPELINES = ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline",
                   "StableDiffusionXLInpaintPipeline")
_SD_GUIDANCE = Guidance(CFG, "guidance_scale", 1.0)  # CFG when guidance_scale > 1 (pipeline_stable_diffusion.py)


def _turbo(size: int) -> Variant:
    # Turbo models are distilled to 1-4 steps without guidance; guidance 0 turns CFG off.
    return Variant("turbo", "Turbo", "turbo", Defaults(size, TURBO_STEPS, TURBO_GUIDANCE, DEFAULT_SCHEDULER))


FAMILIES: tuple[Family, ...] = (
    Family(
        id=SD1, label="SD 1.x",
        pipelines=Pipelines("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
        recognise=Recognise(_SD_PIPELINES, _sd1_folder, _sd1_checkpoint, ("sd1",)),
        defaults=Defaults(512, STANDARD_STEPS, STANDARD_GUIDANCE, DEFAULT_SCHEDULER),
        guidance=_SD_GUIDANCE, negative_prompt=True,
        encoders=(TextEncoder("text_encoder", "tokenizer", CLIP, 77, 768),),
        latent_format="sd", lora=Lora("StableDiffusionLoraLoaderMixin", 768), samplers=SD_SAMPLERS,
        variants=(_turbo(512),),
        # SD 1.5 at 512x512 on an H100 in float16: 2700 MiB peak, 2.0 GB of it weights (docs/performance.md).
        job_memory_gb=0.7),
    Family(
        id=SD2, label="SD 2.x",
        pipelines=Pipelines("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
        recognise=Recognise(_SD_PIPELINES, _sd2_folder, _sd2_checkpoint),
        defaults=Defaults(768, STANDARD_STEPS, STANDARD_GUIDANCE, DEFAULT_SCHEDULER),
        guidance=_SD_GUIDANCE, negative_prompt=True,
        encoders=(TextEncoder("text_encoder", "tokenizer", CLIP, 77, 1024),),
        latent_format="sd", lora=Lora("StableDiffusionLoraLoaderMixin", 1024), samplers=SD_SAMPLERS,
        variants=(_turbo(512),),
        # SD 2.x weights do not say whether they are the 512 base or the 768 v-model; the 768 model
        # is the common one, and its config is what diffusers picks for them.
        checkpoint_v_prediction=True),
    Family(
        id=SDXL, label="SDXL",
        pipelines=Pipelines("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"),
        recognise=Recognise(_SDXL_PIPELINES, _sdxl_folder, _sdxl_checkpoint, ("sdxl",)),
        defaults=Defaults(1024, STANDARD_STEPS, STANDARD_GUIDANCE, DEFAULT_SCHEDULER),
        guidance=_SD_GUIDANCE, negative_prompt=True,
        # Both encoders read the layer before last; the second (OpenCLIP bigG) gives the pooled
        # embedding (pipeline_stable_diffusion_xl.py, encode_prompt).
        encoders=(TextEncoder("text_encoder", "tokenizer", CLIP, 77, 768, penultimate=True, embedding_key="clip_l"),
                  TextEncoder("text_encoder_2", "tokenizer_2", CLIP, 77, 1280, penultimate=True, pooled=True,
                              embedding_key="clip_g")),
        latent_format="sdxl", lora=Lora("StableDiffusionXLLoraLoaderMixin", 2048), samplers=SD_SAMPLERS,
        variants=(_turbo(512),),
        vae_float16_overflow=True),
)
