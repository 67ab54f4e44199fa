"""Tiny random-weight Qwen-Image pipelines (text to image, and the Edit and Edit-2509 editing ones),
a few hundred kilobytes, built here with a byte-level Qwen tokenizer: no downloads.

Text encoder: Qwen2_5_VLForConditionalGeneration (text hidden 16 = the transformer's
joint_attention_dim = the vision tower's out_hidden_size). VAE: AutoencoderKLQwenImage with the real
latents_mean/latents_std (its defaults) and two spatial downsamples (vae_scale_factor 4; 8 in the
real model). The editing pipelines also need a Qwen2VLProcessor: transformers 5 cannot build one
without torchvision (it type-checks the unused video_processor slot), so here it is a subclass
without that slot, saved under the name the real repositories give it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.tiny_models import qwen_tokenizer

QWEN_VL_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                    "<|image_pad|>", "<|video_pad|>")


def qwen_vl_tokenizer():
    """A byte-level Qwen2Tokenizer with Qwen2.5-VL's vision tokens; it and its size."""
    return qwen_tokenizer(QWEN_VL_SPECIALS)


def _components(edit: bool) -> dict:
    import torch
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer, vocab_size = qwen_vl_tokenizer()
    ids = {key: tokenizer.convert_tokens_to_ids(token) for key, token in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=64, out_channels=16, num_layers=2, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4))
    vae = AutoencoderKLQwenImage(base_dim=16, z_dim=16, dim_mult=[1, 2, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True])
    text_encoder = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(
        text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "vocab_size": vocab_size, "bos_token_id": None,
                     "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
                     "pad_token_id": tokenizer.pad_token_id,
                     "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
                     "rope_theta": 1000000.0},
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16,
                       "fullatt_block_indexes": [1]},
        vocab_size=vocab_size, **ids))
    # Qwen-Image's published scheduler config: dynamic, exponential time shift.
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
        base_image_seq_len=256, max_image_seq_len=8192, time_shift_type="exponential", shift_terminal=0.02)
    components = dict(scheduler=scheduler, vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                      transformer=transformer.eval())
    if edit:
        from transformers import Qwen2VLImageProcessorPil

        from tui.engine.qwen_vl import processor_class

        # a small max_pixels keeps the vision tower cheap
        image_processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112)
        components["processor"] = processor_class()(image_processor=image_processor, tokenizer=tokenizer)
    return components


def build_tiny_qwen_image(kind: str = "t2i"):
    """``kind``: "t2i" (QwenImagePipeline), "edit" (QwenImageEditPipeline), "edit_plus"
    (QwenImageEditPlusPipeline, Qwen-Image-Edit-2509/2511's)."""
    import diffusers

    name = {"t2i": "QwenImagePipeline", "edit": "QwenImageEditPipeline", "edit_plus": "QwenImageEditPlusPipeline"}
    return getattr(diffusers, name[kind])(**_components(kind != "t2i"))


def save_tiny_qwen_image(kind: str, folder: Path) -> Path:
    """The pipeline saved as a diffusers folder, its processor named Qwen2VLProcessor as in the real repositories."""
    build_tiny_qwen_image(kind).save_pretrained(folder)
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    if "processor" in index:
        index["processor"] = ["transformers", "Qwen2VLProcessor"]
        index_path.write_text(json.dumps(index, indent=2))
    return folder


def shrink_edit_reference_sizes(area: int = 32 * 32) -> None:
    """Test speed: the edit pipelines resize every reference image to ~1 MP for the VAE (and Edit-2509's
    to 384x384 for the vision tower), hard-coded (pipeline_qwenimage_edit.py: calculate_dimensions(1024 * 1024)
    in __call__; pipeline_qwenimage_edit_plus.py: VAE_IMAGE_SIZE, CONDITION_IMAGE_SIZE); with tiny weights on
    a CPU that is 30-90 s a call. Capped at ``area`` it is well under a second."""
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit as edit
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus as plus

    original = edit.calculate_dimensions
    if not getattr(original, "capped", False):
        def capped(target_area, ratio):
            return original(min(target_area, area), ratio)

        capped.capped = True
        edit.calculate_dimensions = capped
    plus.VAE_IMAGE_SIZE = plus.CONDITION_IMAGE_SIZE = area


def qwen_image_checkpoint_keys(prefix: str = "") -> set[str]:
    """Tensor names of a Qwen-Image transformer in one file (as ComfyUI's qwen_image files have them)."""
    names = ["img_in.weight", "img_in.bias", "txt_in.weight", "txt_in.bias", "txt_norm.weight",
             "time_text_embed.timestep_embedder.linear_1.weight", "norm_out.linear.weight", "proj_out.weight"]
    for block in range(2):
        names += [f"transformer_blocks.{block}.{part}" for part in (
            "img_mod.1.weight", "img_mod.1.bias", "txt_mod.1.weight", "attn.to_q.weight", "attn.add_q_proj.weight",
            "img_mlp.net.0.proj.weight", "txt_mlp.net.2.weight")]
    return {prefix + name for name in names}
