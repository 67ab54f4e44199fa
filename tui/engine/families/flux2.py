"""FLUX.2 (Black Forest Labs): flow-matching transformers on a 32-channel VAE whose latents are
patchified 2x2 into 128 channels and batch-normalised. [dev] has a Mistral Small 3.1 text encoder
and distilled guidance; [klein] 4B and 9B have a Qwen3 text encoder, distilled to 4 steps without
guidance ("klein") or undistilled with real classifier-free guidance ("klein base").

Facts from diffusers' pipelines/flux2/pipeline_flux2.py, pipeline_flux2_klein.py and
loaders/single_file_utils.py (diffusers 0.42.1)."""

from __future__ import annotations

from typing import Any, Collection, Mapping

from tui.engine.families.entry import (CFG, DISTILLED, FLOW_EULER, FLOW_SAMPLERS, NO_GUIDANCE, Defaults, Family,
                                       Guidance, Lora, LoraLayers, Pipelines, Precision, Recognise, SingleFile,
                                       TextEncoder)
from tui.engine.families.flux import widens_as

FLUX2, FLUX2_KLEIN, FLUX2_KLEIN_BASE = "flux2", "flux2-klein", "flux2-klein-base"

COMFY_PREFIX = "model.diffusion_model."
# FLUX.2's original transformer files: one modulation for all double blocks and one for all single
# blocks (CHECKPOINT_KEY_NAMES["flux2"] in single_file_utils.py; convert_flux2_transformer_checkpoint_to_diffusers
# maps them to double_stream_modulation_img/single_stream_modulation). FLUX.1's files share
# "double_blocks.0.img_attn.qkv.weight" but modulate each block ("double_blocks.0.img_mod.lin.weight")
# and have no shared modulation.
_FLUX2_KEY = "single_stream_modulation.lin.weight"
_FLUX1_KEY = "double_blocks.0.img_mod.lin.weight"
# [dev] embeds the guidance (transformer guidance_embeds=True, "guidance_in.in_layer" ->
# time_guidance_embed.guidance_embedder.linear_1 in the conversion); klein has none (guidance_embeds=False).
_GUIDANCE_KEY = "guidance_in.in_layer.weight"


def _has(keys: Collection[str], name: str) -> bool:
    return name in keys or COMFY_PREFIX + name in keys


def _flux2_checkpoint(keys: Collection[str]) -> bool:
    return _has(keys, _FLUX2_KEY) and not _has(keys, _FLUX1_KEY)


def _dev_checkpoint(keys: Collection[str]) -> bool:
    return _flux2_checkpoint(keys) and _has(keys, _GUIDANCE_KEY)


def _klein_checkpoint(keys: Collection[str]) -> bool:
    # A klein and a klein base file have the same tensors; a file is taken for the distilled klein,
    # the published klein-4B/9B single files (a base one is recognised, with klein's defaults).
    return _flux2_checkpoint(keys) and not _has(keys, _GUIDANCE_KEY)


def _dev_repo(_shapes: Mapping[str, tuple[int, ...]], _variant: bool) -> str:
    return "black-forest-labs/FLUX.2-dev"


def _klein_repo(shapes: Mapping[str, tuple[int, ...]], _variant: bool) -> str:
    """klein 4B or 9B by the transformer's width (img_in's outputs): 24 heads of 128 in 4B's
    transformer config, 32 in 9B's (black-forest-labs/FLUX.2-klein-4B and -9B, transformer/config.json);
    their Qwen3 text encoders differ too, so the repository must be the file's own size."""
    width = next((shape[0] for prefix in ("", COMFY_PREFIX) if (shape := shapes.get(prefix + "img_in.weight"))), 0)
    return "black-forest-labs/FLUX.2-klein-9B" if width > 24 * 128 else "black-forest-labs/FLUX.2-klein-4B"


_KLEIN_PIPELINES = ("Flux2KleinPipeline", "Flux2KleinInpaintPipeline", "Flux2KleinKVPipeline")


def _klein(index: Mapping[str, Any]) -> bool:
    return index.get("_class_name") in _KLEIN_PIPELINES


def _distilled(index: Mapping[str, Any], _configs: Mapping[str, Mapping[str, Any]]) -> bool:
    # Flux2KleinPipeline registers is_distilled (default False) to model_index.json: true for
    # klein-4B/9B (black-forest-labs/FLUX.2-klein-4B's model_index.json says "is_distilled": true),
    # false for the base models; its guidance runs only when not distilled.
    return _klein(index) and index.get("is_distilled") is True


def _undistilled(index: Mapping[str, Any], _configs: Mapping[str, Mapping[str, Any]]) -> bool:
    return _klein(index) and index.get("is_distilled") is not True

# Klein's text encoder: Qwen3ForCausalLM (Qwen3-4B for klein 4B, hidden size 2560; Qwen3-8B for 9B,
# 4096); the prompt is padded to max_sequence_length, 512 by default, and layers (9, 18, 27) stacked.
_KLEIN_ENCODER = TextEncoder("text_encoder", "tokenizer", "qwen3", 512, 2560)
# FLUX.2's VAE latents (32 channels, 2x2 patches) as the transformer reads them, batch-normalised:
# ComfyUI's Flux2 latent format (comfy/latent_formats.py).
_LATENT = "flux2"


def _flux2_lora(layers: LoraLayers) -> bool:
    # FLUX.2's MLP is SwiGLU, 3 x its width with its gate fused: linear1 is 3 + 2 x 3 times as wide, img_mlp.0
    # 2 x 3 (transformer_flux2.py: mlp_ratio 3.0, mlp_mult_factor 2, Flux2FeedForward's linear_in).
    return widens_as(layers, linear1=9, img_mlp=6)


# Both pipelines; transformer only. lora_pipeline.py's Flux2LoraLoaderMixin converts kohya's and ComfyUI's
# (ai-toolkit's) original names. In diffusers' names its single blocks have one fused input layer and an
# output layer, its double blocks a SwiGLU MLP, and its modulations are shared by all blocks.
_LORA = Lora("Flux2LoraLoaderMixin", label="FLUX.2",
             layers=("single_transformer_blocks.N.attn.to_qkv_mlp_proj", "single_transformer_blocks.N.attn.to_out",
                     "transformer_blocks.N.ff.linear_in", "transformer_blocks.N.ff.linear_out",
                     "transformer_blocks.N.ff_context.linear_in", "transformer_blocks.N.ff_context.linear_out",
                     "double_stream_modulation_img", "double_stream_modulation_txt", "single_stream_modulation",
                     "time_guidance_embed"),
             fits=_flux2_lora)
# No img2img with strength: the pipelines edit by reference images (image=, one or several PIL images of
# at least 64 px a side; flux2/image_processor.py), the engine's edit by instruction.
# No GGUF architecture of its own: city96/ComfyUI-GGUF's tools/convert.py detects FLUX.1 and FLUX.2 alike by
# double_blocks.0.img_attn.proj and writes "flux" (loader.py's IMG_ARCH_LIST has no "flux2"); the tensor
# names tell the two apart.
# Published in bfloat16; no report of FLUX.2 failing in float16 at inference was found, so it is taken as safe.
_PRECISION = Precision("bfloat16", True, "FLUX.2 is published in bfloat16")
_JOB_MEMORY_GB = 2.6  # FLUX.2 klein 4B at 1024x1024, bfloat16, H200 peak minus weights (dev and 9B unmeasured)

FAMILIES: tuple[Family, ...] = (
    Family(
        id=FLUX2, label="FLUX.2",
        pipelines=Pipelines("Flux2Pipeline", edit="Flux2Pipeline"),
        recognise=Recognise(("Flux2Pipeline",), checkpoint=_dev_checkpoint),
        # Flux2Pipeline.__call__'s defaults: 50 steps, guidance_scale 4.0, 1024 px (default_sample_size 128 x 8).
        defaults=Defaults(1024, 50, 4.0, FLOW_EULER),
        # guidance_scale feeds the guidance embedding (transformer guidance=...): no second pass, never off.
        guidance=Guidance(DISTILLED, "guidance_scale", 0.0), negative_prompt=False,
        # Mistral3ForConditionalGeneration (Mistral Small 3.1, hidden size 5120), max_sequence_length 512.
        encoders=(TextEncoder("text_encoder", "tokenizer", "mistral", 512, 5120),),
        latent_format=_LATENT, lora=_LORA, samplers=FLOW_SAMPLERS, passes_mu=True, precision=_PRECISION,
        job_memory_gb=_JOB_MEMORY_GB,
        single_file=SingleFile("Flux2Transformer2DModel", _dev_repo)),
    Family(
        id=FLUX2_KLEIN, label="FLUX.2 klein",
        pipelines=Pipelines("Flux2KleinPipeline", edit="Flux2KleinPipeline"),
        recognise=Recognise(_KLEIN_PIPELINES, folder=_distilled, checkpoint=_klein_checkpoint),
        # Step-distilled to 4 steps (BFL's flux2 README: klein 4B/9B step-distilled, the Base ones not;
        # their model cards run 4 steps at guidance_scale 1.0), so no guidance.
        defaults=Defaults(1024, 4, 0.0, FLOW_EULER),
        # The pipeline runs no guidance for a distilled model whatever guidance_scale says (it logs that
        # one above 1, its default 4.0 included, "is ignored for step-wise distilled models").
        guidance=Guidance(NO_GUIDANCE, None), negative_prompt=False, encoders=(_KLEIN_ENCODER,),
        latent_format=_LATENT, lora=_LORA, samplers=FLOW_SAMPLERS, passes_mu=True, precision=_PRECISION,
        job_memory_gb=_JOB_MEMORY_GB,
        single_file=SingleFile("Flux2Transformer2DModel", _klein_repo)),
    Family(
        id=FLUX2_KLEIN_BASE, label="FLUX.2 klein Base",
        pipelines=Pipelines("Flux2KleinPipeline", edit="Flux2KleinPipeline"),
        recognise=Recognise(_KLEIN_PIPELINES, folder=_undistilled),
        # The pipeline's docstring example (FLUX.2-klein-base-9B) and __call__ defaults: 50 steps, guidance 4.0.
        defaults=Defaults(1024, 50, 4.0, FLOW_EULER),
        # guidance_scale is real CFG against the empty prompt (the pipeline takes no negative_prompt,
        # only negative_prompt_embeds; "" is used), on when guidance_scale > 1 (do_classifier_free_guidance).
        guidance=Guidance(CFG, "guidance_scale", 1.0), negative_prompt=False, encoders=(_KLEIN_ENCODER,),
        latent_format=_LATENT, lora=_LORA, samplers=FLOW_SAMPLERS, passes_mu=True, precision=_PRECISION,
        job_memory_gb=_JOB_MEMORY_GB),
)
