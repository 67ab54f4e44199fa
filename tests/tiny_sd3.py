"""A tiny random-weight Stable Diffusion 3.5 pipeline (CPU, no network): two CLIP text encoders
with projections, a T5 encoder, a 16-channel VAE with SD3's scaling and shift, and an MMDiT shaped
as 3.5 Medium's (dual attention, RMS q/k norm), with SD3.5's scheduler (FlowMatch Euler, shift 3).

Shape rules (diffusers' SD3Transformer2DModel and encode_prompt): joint_attention_dim is T5's width
and at least the two CLIPs' widths together; pooled_projection_dim is the two projections
together; pos_embed_max_size covers the latent grid in patches.
"""

from __future__ import annotations

from tui.engine.demo import _byte_level_vocab

T5_PIECES = ("<pad>", "</s>", "<unk>", "\u2581")


def t5_tokenizer():
    """A T5TokenizerFast over a tiny Unigram vocabulary built here (pad 0, end 1, unknown 2): letters,
    digits, punctuation and each lower-case letter starting a word. Returns it and its size."""
    from transformers import T5TokenizerFast

    pieces = [(piece, 0.0) for piece in T5_PIECES[:3]] + [(T5_PIECES[3], -2.0)]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-:;()"]
    pieces += [("\u2581" + c, -4.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    return T5TokenizerFast(vocab=pieces, unk_id=2, extra_ids=0, model_max_length=512), len(pieces)


def build_tiny_sd3():
    import torch
    from diffusers import (AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel,
                           StableDiffusion3Pipeline)
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer, T5Config, T5EncoderModel

    vocab = _byte_level_vocab()
    clip_tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    t5_tok, t5_vocab = t5_tokenizer()

    def clip(seed: int):
        torch.manual_seed(seed)
        return CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
            max_position_embeddings=77, projection_dim=32, bos_token_id=0, eos_token_id=1, pad_token_id=1,
            hidden_act="gelu")).eval()

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        transformer = SD3Transformer2DModel(
            sample_size=32, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=8,
            num_attention_heads=4, joint_attention_dim=64, caption_projection_dim=32, pooled_projection_dim=64,
            pos_embed_max_size=32, dual_attention_layers=(0,), qk_norm="rms_norm")
        text_encoder, text_encoder_2 = clip(1), clip(2)
        torch.manual_seed(3)
        text_encoder_3 = T5EncoderModel(T5Config(
            vocab_size=t5_vocab, d_model=64, d_kv=8, d_ff=37, num_layers=2, num_heads=4, pad_token_id=0,
            eos_token_id=1, decoder_start_token_id=0)).eval()
        torch.manual_seed(4)
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
            up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[8, 16], layers_per_block=1,
            latent_channels=16, norm_num_groups=8, sample_size=32, use_quant_conv=False, use_post_quant_conv=False,
            scaling_factor=1.5305, shift_factor=0.0609)  # SD3/3.5's VAE config
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)  # SD3.5's scheduler config
    pipe = StableDiffusion3Pipeline(
        scheduler=scheduler, vae=vae.eval(), transformer=transformer.eval(), text_encoder=text_encoder,
        tokenizer=clip_tokenizer, text_encoder_2=text_encoder_2, tokenizer_2=clip_tokenizer,
        text_encoder_3=text_encoder_3, tokenizer_3=t5_tok)
    pipe.set_progress_bar_config(disable=True)
    return pipe
