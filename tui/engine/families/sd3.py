"""Stable Diffusion 3 and 3.5 (Medium, Large, Large Turbo): MMDiT flow-matching transformers with
three text encoders (CLIP-L, OpenCLIP bigG, T5-XXL) and a 16-channel VAE. Facts from diffusers'
pipelines/stable_diffusion_3/pipeline_stable_diffusion_3.py (and _img2img.py), its single-file
loader (loaders/single_file_utils.py) and Stability AI's model cards."""

from __future__ import annotations

from typing import Collection, Mapping

from tui.engine.families.entry import (CFG, CLIP, FLOW_EULER, FLOW_SAMPLERS, Defaults, Family, Guidance, Lora,
                                       LoraLayers, Pipelines, Precision, Recognise, SingleFile, TextEncoder, Variant,
                                       layers_named)

SD3 = "sd3"

# An original (Stability AI) checkpoint's MMDiT: its first joint block and its patch embedding, bare
# or under ComfyUI's prefix (single_file_utils.py, CHECKPOINT_KEY_NAMES "sd3"/"sd35_large").
# FLUX.1's transformer has double_blocks/single_blocks instead, SD/SDXL's UNet input_blocks.
_MMDIT_KEYS = ("joint_blocks.0.context_block.attn.qkv.weight", "x_embedder.proj.weight")
_PREFIXES = ("", "model.diffusion_model.")


def _sd3_checkpoint(keys: Collection[str]) -> bool:
    """A whole SD3/3.5 transformer, alone or with its text encoders (text_encoders.clip_l/clip_g/
    t5xxl) and VAE in one all-in-one file: its joint blocks decide, the encoders alone do not."""
    return any(all(prefix + key in keys for key in _MMDIT_KEYS) for prefix in _PREFIXES)


def _has(keys: Collection[str], name: str) -> bool:
    return any(prefix + name in keys for prefix in _PREFIXES)


def _base_repo(shapes: Mapping[str, tuple[int, ...]], turbo: bool) -> str:
    """The repository of the file's model, as diffusers tells them (single_file_utils.py,
    infer_diffusers_model_type): 3.5 Large has 38 joint blocks, 3.5 Medium second attentions in its
    image blocks (MMDiT-X), 3.0 Medium neither."""
    if _has(shapes, "joint_blocks.37.x_block.mlp.fc1.weight"):
        return "stabilityai/stable-diffusion-3.5-large" + ("-turbo" if turbo else "")
    if _has(shapes, "joint_blocks.0.x_block.attn2.qkv.weight"):
        return "stabilityai/stable-diffusion-3.5-medium"
    return "stabilityai/stable-diffusion-3-medium-diffusers"


# The MMDiT's width is 64 x its depth: 1536 for SD3 Medium and SD 3.5 Medium (24 blocks), 2432 for SD 3.5 Large
# (38 blocks) (their transformer configs: attention_head_dim 64, num_attention_heads 24 or 38). FLUX.1's and
# Qwen-Image's blocks, named as SD3's in diffusers, are 3072 wide.
_WIDTHS = (1536, 2432)


def _sd3_lora(layers: LoraLayers) -> bool:
    """A LoRA in diffusers' names (transformer_blocks.N.attn, shared with FLUX.1 and Qwen-Image) of SD3's widths."""
    attention = layers_named(layers, "transformer_blocks.N.attn")
    return any(width in _WIDTHS for width, _ in attention.values()) and \
        not layers_named(layers, "single_transformer_blocks")


# Original (Stability AI) names, which kohya's SD3 LoRAs have (diffusers' SD3LoraLoaderMixin reads only its own
# names), and the second attention only SD 3.5 Medium's blocks have (dual_attention_layers).
_LORA = Lora("SD3LoraLoaderMixin", label="SD3", layers=("joint_blocks.N", "transformer_blocks.N.attn2"),
             fits=_sd3_lora)

FAMILIES: tuple[Family, ...] = (
    Family(
        id=SD3, label="SD3",
        pipelines=Pipelines("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline"),
        recognise=Recognise(("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline",
                             "StableDiffusion3InpaintPipeline"),
                            checkpoint=_sd3_checkpoint,
                            gguf_architectures=("sd3",)),  # city96/ComfyUI-GGUF, loader.py IMG_ARCH_LIST
        # SD 3.5 Large's model card: 28 steps at guidance 3.5, 1024 px (the transformer's sample_size
        # 128 latents x 8). SD 3.5 Medium's card says 40 steps at 4.5; a model's variant is told by its
        # name here and only "turbo" has its own defaults, so Medium starts at Large's.
        defaults=Defaults(1024, 28, 3.5, FLOW_EULER),
        # CFG when guidance_scale > 1 (pipeline_stable_diffusion_3.py, do_classifier_free_guidance);
        # the negative prompt defaults to "".
        guidance=Guidance(CFG, "guidance_scale", 1.0), negative_prompt=True,
        # encode_prompt: both CLIPs read the layer before last (hidden_states[-2]) and give pooled
        # embeddings (joined: 768 + 1280); T5-XXL reads max_sequence_length tokens, 256 by default.
        encoders=(TextEncoder("text_encoder", "tokenizer", CLIP, 77, 768, penultimate=True, pooled=True,
                              embedding_key="clip_l"),
                  TextEncoder("text_encoder_2", "tokenizer_2", CLIP, 77, 1280, penultimate=True, pooled=True,
                              embedding_key="clip_g"),
                  TextEncoder("text_encoder_3", "tokenizer_3", "t5", 256, 4096)),
        # Its prompt embeddings are CLIP-L and G side by side, padded to 4096, joined along the
        # sequence with T5's: conditioning's CLIP-only embeddings would not fit, so prompts go as text.
        clip_prompt_embeds=False,
        # 16 channels, not packed (the transformer patchifies); ComfyUI's comfy/latent_formats.py, class SD3.
        latent_format="sd3", lora=_LORA, samplers=FLOW_SAMPLERS,
        # SD 3.5 Large Turbo's model card: 4 steps at guidance 0 (no CFG).
        variants=(Variant("turbo", "Turbo", "turbo", Defaults(1024, 4, 0.0, FLOW_EULER)),),
        # SD 3.5's model cards load it in bfloat16; no report of it failing in float16 was found.
        precision=Precision("bfloat16", True, "SD 3.5's model cards run it in bfloat16"),
        job_memory_gb=3.4,  # SD 3.5 Large at 1024x1024, bfloat16, H200 peak minus weights
        single_file=SingleFile("SD3Transformer2DModel", _base_repo)),
)
