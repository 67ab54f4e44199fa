"""Tiny random-weight FLUX.1 pipelines for the engine's tests: FluxPipeline with a guidance
embedding (dev-like) or without (schnell-like), and FluxKontextPipeline, on the same components.
Shapes follow the real models in miniature: 16 latent channels packed 2x2 into 64 transformer
input channels, CLIP (pooled) and T5 (sequence) text encoders; tokenizers built here (no network)."""

from __future__ import annotations

from tui.engine.demo import _byte_level_vocab


def t5_tokenizer():
    """A T5TokenizerFast over a hand-built Unigram vocabulary (pad 0, end 1, unknown 2) that
    spells any ASCII word; returns it and its vocabulary size."""
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-:;()"]
    pieces += [("\u2581" + c, -4.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    return T5TokenizerFast(vocab=pieces, unk_id=2, extra_ids=0, model_max_length=512), len(pieces)


def tiny_flux_components(guidance_embeds: bool = True) -> dict:
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel

    clip_vocab = _byte_level_vocab()
    t5, t5_size = t5_tokenizer()
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
        guidance_embeds=guidance_embeds)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(clip_vocab), hidden_size=32, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=77, projection_dim=32, bos_token_id=0, eos_token_id=1,
        pad_token_id=1))
    text_encoder_2 = T5EncoderModel(T5Config(
        vocab_size=t5_size, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[8, 16], layers_per_block=1, latent_channels=16,
        norm_num_groups=8, sample_size=32, use_quant_conv=False, use_post_quant_conv=False,
        scaling_factor=0.3611, shift_factor=0.1159)  # FLUX.1's ae
    # FLUX.1-dev's published scheduler config; schnell's is static (shift 1.0).
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096) if guidance_embeds else \
        FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)
    return dict(scheduler=scheduler, vae=vae.eval(), text_encoder=text_encoder.eval(),
                tokenizer=CLIPTokenizer(vocab=clip_vocab, merges=[], model_max_length=77),
                text_encoder_2=text_encoder_2.eval(), tokenizer_2=t5, transformer=transformer.eval())


def build_tiny_flux(guidance_embeds: bool = True, kontext: bool = False):
    """FluxPipeline (dev-like with the guidance embedding, schnell-like without) or, with
    ``kontext``, FluxKontextPipeline, of random weights."""
    from diffusers import FluxKontextPipeline, FluxPipeline

    pipe = (FluxKontextPipeline if kontext else FluxPipeline)(**tiny_flux_components(guidance_embeds))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def shrink_kontext_resolutions(monkeypatch, side: int = 64) -> None:
    """Test speed: FluxKontextPipeline resizes the image to edit to the nearest of Kontext's trained
    sizes, all about 1 MP (PREFERRED_KONTEXT_RESOLUTIONS in pipeline_flux_kontext.py, read on every
    call unless _auto_resize=False): 4096 image tokens' attention on the CPU, and a 1 MP VAE encode,
    take minutes with tiny weights. With ``side`` x ``side`` the only trained size, an image of that
    size is edited as it is, by the engine and a bare call alike."""
    import diffusers.pipelines.flux.pipeline_flux_kontext as kontext

    monkeypatch.setattr(kontext, "PREFERRED_KONTEXT_RESOLUTIONS", [(side, side)])
