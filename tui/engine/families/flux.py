"""FLUX.1 (Black Forest Labs): a 12B flow-matching transformer reading T5-XXL's sequence and CLIP-L's
pooled embedding, with 16-channel latents packed 2x2 into tokens. dev, its finetune Krea and schnell
run FluxPipeline; Kontext, the instruction-editing model, runs FluxKontextPipeline.

Facts from diffusers' pipelines/flux/pipeline_flux.py, pipeline_flux_img2img.py and
pipeline_flux_kontext.py, loaders/single_file_utils.py (tensor names) and the models' cards.

Kontext is an entry of its own rather than a variant of FLUX.1: a folder of it is told by its
pipeline class (model_index.json says FluxKontextPipeline), which only an entry's Recognise can
match (a Variant is told by name and names no pipelines), and its text-to-image and edit pipeline
is that class, which an entry's Pipelines records."""

from __future__ import annotations

from typing import Any, Collection, Mapping

from tui.engine.families.entry import (DISTILLED, FLOW_EULER, FLOW_SIGMAS_SAMPLERS, NO_GUIDANCE, Defaults, Family,
                                       Guidance, Lora, LoraLayers, Pipelines, Precision, Recognise, SingleFile,
                                       TextEncoder, Variant, layers_named)

FLUX, FLUX_KONTEXT = "flux", "flux-kontext"  # registry ids

COMFY_PREFIX = "model.diffusion_model."  # ComfyUI's single files prefix the transformer's tensors
# Tensor names of FLUX.1's original (BFL) checkpoints; the guidance embedding is dev's (and its
# finetunes': Krea, Kontext) and absent from schnell (single_file_utils.py, infer_diffusers_model_type).
_FLUX_KEYS = ("double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight")
_GUIDANCE_KEY = "guidance_in.in_layer.weight"
_FLUX2_KEY = "single_stream_modulation.lin.weight"  # FLUX.2 keeps the block names and adds this one
# The same transformer in diffusers' names (FluxTransformer2DModel's state dict, which some finetunes are
# published in): SD3's blocks also have norm1_context but no single blocks; FLUX.2's single blocks fuse
# proj_mlp into attn.to_qkv_mlp_proj, Chroma's norms have no linear (transformer_flux.py, transformer_flux2.py,
# transformer_chroma.py).
_DIFFUSERS_KEYS = ("transformer_blocks.0.norm1_context.linear.weight", "single_transformer_blocks.0.proj_mlp.weight")
_DIFFUSERS_GUIDANCE_KEY = "time_text_embed.guidance_embedder.linear_1.weight"
_DEV, _SCHNELL = "black-forest-labs/FLUX.1-dev", "black-forest-labs/FLUX.1-schnell"


def _has(keys: Collection[str], name: str) -> bool:
    return name in keys or COMFY_PREFIX + name in keys


def _flux_checkpoint(keys: Collection[str]) -> bool:
    original = all(_has(keys, name) for name in _FLUX_KEYS) and not _has(keys, _FLUX2_KEY)
    return original or all(_has(keys, name) for name in _DIFFUSERS_KEYS)


def _schnell_checkpoint(keys: Collection[str]) -> bool:
    return not _has(keys, _GUIDANCE_KEY) and not _has(keys, _DIFFUSERS_GUIDANCE_KEY)


def _base_repo(_shapes: Mapping[str, tuple[int, ...]], schnell: bool) -> str:
    """dev's repository for dev and its finetunes (Krea), whose transformer config they share; schnell's
    for schnell (no guidance embedding, its own scheduler)."""
    return _SCHNELL if schnell else _DEV


def _schnell_configs(configs: Mapping[str, Mapping[str, Any]]) -> bool | None:
    """schnell's transformer has no guidance embedding (its config says guidance_embeds false);
    None when the folder has no transformer config to say."""
    embeds = (configs.get("transformer") or {}).get("guidance_embeds")
    return None if embeds is None else not embeds


# Both encoders read the prompt as text: T5-XXL gives the sequence the transformer attends to,
# CLIP-L only its pooled embedding (pipeline_flux.py, encode_prompt). sdtui's A1111 weighting builds
# a CLIP sequence, which FLUX does not read, so CLIP-L is not of kind CLIP here.
_ENCODERS = (TextEncoder("text_encoder", "tokenizer", "clip-pooled", 77, 768, pooled=True),
             # max_sequence_length: 512 by default and at most (pipeline_flux.py, check_inputs);
             # schnell's card passes 256, the length it was trained with, and reads 512 as well.
             TextEncoder("text_encoder_2", "tokenizer_2", "t5", 512, 4096))
# The guidance embedding (dev, Krea, Kontext): the value is an input of the transformer, read only
# when its config says guidance_embeds; no second pass, so no negative prompt (true CFG, the
# pipeline's true_cfg_scale with a negative prompt, is not used). Every value is read: none is off.
_DISTILLED = Guidance(DISTILLED, "guidance_scale", 0.0)


def widens_as(layers: LoraLayers, linear1: int, img_mlp: int) -> bool:
    """Whether a LoRA in FLUX's original (BFL) layer names, which kohya's and ComfyUI's LoRAs of FLUX.1 and
    FLUX.2 share, widens as the family's blocks do: a single block's linear1 (q, k, v and the MLP's input)
    and a double block's img_mlp.0, their output width over their input width."""
    said = [out == width * times for name, times in (("single_blocks.N.linear1", linear1),
                                                     ("double_blocks.N.img_mlp.0", img_mlp))
            for width, out in layers_named(layers, name).values() if width and out]
    return bool(said) and all(said)


def _flux_lora(layers: LoraLayers) -> bool:
    # FLUX.1's MLP is 4 x its width (GELU): linear1 is 3 + 4 times as wide (transformer_flux.py, mlp_ratio 4.0)
    return widens_as(layers, linear1=7, img_mlp=4)


# lora_pipeline.py's FluxLoraLoaderMixin converts kohya's, XLabs' and ComfyUI's names. In diffusers' names
# FLUX.1's single blocks have their own q, k, v and MLP layers (FLUX.2's one fused layer), XLabs' LoRAs
# "processor" layers and dev's transformer a guidance embedder under time_text_embed.
_LORA = Lora("FluxLoraLoaderMixin", label="FLUX.1",
             layers=("single_transformer_blocks.N.attn.to_q", "single_transformer_blocks.N.attn.to_k",
                     "single_transformer_blocks.N.attn.to_v", "single_transformer_blocks.N.proj_mlp",
                     "single_transformer_blocks.N.proj_out", "single_transformer_blocks.N.norm.linear",
                     "time_text_embed.guidance_embedder", "double_blocks.N.processor"),
             fits=_flux_lora)
# Published in bfloat16. diffusers clips the transformer's two float16 overflows (huggingface/diffusers#9097),
# but FLUX.1's VAE still decodes to black images in float16 on mps (invoke-ai/InvokeAI#7208).
_PRECISION = Precision("bfloat16", False, "FLUX.1's VAE gives black images in float16: invoke-ai/InvokeAI#7208")
_JOB_MEMORY_GB = 2.6  # FLUX.1-dev at 1024x1024, bfloat16, H200 peak minus weights

FAMILIES: tuple[Family, ...] = (
    Family(
        id=FLUX, label="FLUX.1",
        pipelines=Pipelines("FluxPipeline", "FluxImg2ImgPipeline"),
        recognise=Recognise(("FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline"),
                            checkpoint=_flux_checkpoint,
                            # city96/ComfyUI-GGUF loader.py IMG_ARCH_LIST; FLUX.2's files say "flux" too (flux2.py)
                            gguf_architectures=("flux",)),
        # dev and Krea: the pipeline's defaults, 28 steps at guidance 3.5 (FluxPipeline.__call__;
        # the dev card uses 3.5 with 50 steps), 1024 px (default_sample_size 128 x 8).
        defaults=Defaults(1024, 28, 3.5, FLOW_EULER),
        guidance=_DISTILLED, negative_prompt=False, encoders=_ENCODERS,
        # 16 channels packed 2x2 (_pack_latents); ComfyUI's Flux latent format, previews unpack them.
        latent_format="flux", lora=_LORA, samplers=FLOW_SIGMAS_SAMPLERS, passes_mu=True,
        # schnell: timestep-distilled to 4 steps without guidance (its card and pipeline_flux.py's
        # example: num_inference_steps=4, guidance_scale=0.0; its transformer has no guidance
        # embedding). Told by its transformer config or tensor names where there are any, else by
        # name. "turbo" is the id ModelFamily gives a family's distilled variant.
        variants=(Variant("turbo", "schnell", "schnell", Defaults(1024, 4, 0.0, FLOW_EULER),
                          guidance=Guidance(NO_GUIDANCE, None), configs=_schnell_configs,
                          checkpoint=_schnell_checkpoint),),
        precision=_PRECISION, job_memory_gb=_JOB_MEMORY_GB,
        single_file=SingleFile("FluxTransformer2DModel", _base_repo)),
    Family(
        id=FLUX_KONTEXT, label="FLUX.1 Kontext",
        # It edits the image given as image=; without one it generates from the prompt alone. Its
        # height and width are rescaled to max_area (1024**2 by default), so that is given too.
        pipelines=Pipelines("FluxKontextPipeline", None, edit="FluxKontextPipeline"),
        # A single file of it has dev's tensor names (diffusers types it "flux-dev"): it is read as FLUX.1.
        recognise=Recognise(("FluxKontextPipeline", "FluxKontextInpaintPipeline")),
        # 28 steps (FluxKontextPipeline.__call__), guidance 2.5 (its docstring example and card), 1024 px.
        defaults=Defaults(1024, 28, 2.5, FLOW_EULER),
        guidance=_DISTILLED, negative_prompt=False, encoders=_ENCODERS,
        latent_format="flux", lora=_LORA, samplers=FLOW_SIGMAS_SAMPLERS, passes_mu=True,
        area_argument="max_area", precision=_PRECISION, job_memory_gb=_JOB_MEMORY_GB),
)
