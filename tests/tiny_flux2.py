"""Tiny random-weight FLUX.2 pipelines for the engine tests: klein (Flux2KleinPipeline, Qwen3 text
encoder, distilled or base) and [dev] (Flux2Pipeline, Mistral3 text encoder). A few hundred kilobytes
each, built in seconds on a CPU, with locally made byte-level tokenizers (no downloads).

Both text encoders have as many layers as the pipelines' default text_encoder_out_layers reach
((9, 18, 27) for klein, (10, 20, 30) for dev), so the pipelines run with their defaults; the
transformer's joint_attention_dim is 3 x the text hidden size (the three layers stacked)."""

from __future__ import annotations

from tests.tiny_models import qwen_tokenizer
from tui.engine.demo import _byte_characters

HIDDEN = 16
KLEIN_OUT_LAYERS, DEV_OUT_LAYERS = (9, 18, 27), (10, 20, 30)
MISTRAL_SPECIALS = ("<unk>", "<s>", "</s>", "<pad>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]",
                    "[IMG]", "[IMG_BREAK]", "[IMG_END]")
# Mistral-Small-3.1-style template over the list-of-parts messages Flux2Pipeline sends.
MISTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ '[SYSTEM_PROMPT]' }}{% elif m['role'] == 'user' %}{{ '[INST]' }}{% endif %}"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}"
    "{% elif c['type'] == 'image' %}{{ '[IMG]' }}{% endif %}{% endfor %}"
    "{% if m['role'] == 'system' %}{{ '[/SYSTEM_PROMPT]' }}{% elif m['role'] == 'user' %}{{ '[/INST]' }}{% endif %}"
    "{% endfor %}")


def _parts(guidance_embeds: bool):
    """The transformer (guidance embedding for dev only), FLUX.2's 32-channel VAE (its batch norm
    over the 128 patchified channels fresh: mean 0, variance 1) and the flow-matching scheduler
    of the published configs (shift 3, dynamic shifting; the pipelines compute mu)."""
    import torch
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2Transformer2DModel

    torch.manual_seed(0)
    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=128, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=HIDDEN * 3, timestep_guidance_channels=256,
        axes_dims_rope=[4, 4, 4, 4], guidance_embeds=guidance_embeds)
    vae = AutoencoderKLFlux2(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
        latent_channels=32, norm_num_groups=8, sample_size=32, use_quant_conv=False, use_post_quant_conv=False)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True)
    return transformer.eval(), vae.eval(), scheduler


def build_tiny_flux2_klein(is_distilled: bool = True):
    """A FLUX.2 klein pipeline: is_distilled as the klein-4B/9B repositories (True) or the base ones."""
    from diffusers import Flux2KleinPipeline
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer, vocab_size = qwen_tokenizer()
    transformer, vae, scheduler = _parts(guidance_embeds=False)
    text_encoder = Qwen3ForCausalLM(Qwen3Config(
        hidden_size=HIDDEN, intermediate_size=16, num_hidden_layers=max(KLEIN_OUT_LAYERS), num_attention_heads=2,
        num_key_value_heads=2, head_dim=8, vocab_size=vocab_size, max_position_embeddings=1024))
    return Flux2KleinPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                              transformer=transformer, is_distilled=is_distilled)


def mistral_tokenizer():
    """A byte-level tokenizer with Mistral's special tokens and a chat template, and its vocabulary
    size. The real FLUX.2 dev's `tokenizer` is a PixtralProcessor, which needs torchvision in this
    transformers version; for text to image and reference images the pipeline only calls
    apply_chat_template, which a tokenizer answers (only caption upsampling needs the processor)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {special: index for index, special in enumerate(MISTRAL_SPECIALS)}
    for char in _byte_characters():
        vocab.setdefault(char, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", pad_token="<pad>", model_max_length=4096)
    tokenizer.add_special_tokens({"additional_special_tokens": [AddedToken(s, special=True)
                                                                for s in MISTRAL_SPECIALS[4:]]})
    tokenizer.chat_template = MISTRAL_CHAT_TEMPLATE
    return tokenizer, len(vocab)


def build_tiny_flux2_dev():
    """A FLUX.2 [dev] pipeline (guidance embedding) with a tiny Mistral3 text encoder."""
    from diffusers import Flux2Pipeline
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    tokenizer, vocab_size = mistral_tokenizer()
    transformer, vae, scheduler = _parts(guidance_embeds=True)
    text_encoder = Mistral3ForConditionalGeneration(Mistral3Config(
        text_config={"model_type": "mistral", "vocab_size": vocab_size, "hidden_size": HIDDEN,
                     "intermediate_size": 16, "max_position_embeddings": 4096, "num_attention_heads": 2,
                     "num_hidden_layers": max(DEV_OUT_LAYERS), "num_key_value_heads": 2, "head_dim": 8,
                     "rms_norm_eps": 1e-05, "rope_theta": 1e9, "sliding_window": None,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={"model_type": "pixtral", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "intermediate_size": 16, "image_size": 64, "patch_size": 16, "num_channels": 3, "head_dim": 8},
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"), vision_feature_layer=-1, spatial_merge_size=1))
    return Flux2Pipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                         transformer=transformer)
