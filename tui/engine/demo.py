"""The demo model: a tiny Stable Diffusion pipeline with random weights, built in memory.

It runs the real diffusers code (UNet, VAE, CLIP text encoder, tokenizer, schedulers)
with no files and no network, so a newcomer can try the whole flow offline and tests
exercise real diffusers. Its weights are random: it produces coloured noise, and
everything that shows it says so.
"""

from __future__ import annotations

DEMO_MODEL_ID = "demo"
DEMO_LABEL = "demo model (random weights)"
DEMO_SEED = 20240229


def _byte_characters() -> list[str]:
    """The 256 printable stand-ins GPT-2 style byte-level BPE uses for the byte values.

    Printable Latin-1 bytes stand for themselves; the others are shifted past 255.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, shifted = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + shifted))
            shifted += 1
    return chars


def _byte_level_vocab() -> dict[str, int]:
    # CLIP's tokenizer maps each byte to a printable character before looking it up;
    # with every such character (and its end-of-word form) in the vocabulary, any
    # text tokenizes without merges.
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in _byte_characters():
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    return vocab


def build_demo_pipeline():
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = _byte_level_vocab()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(DEMO_SEED)
        unet = UNet2DConditionModel(
            sample_size=64,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        # Four blocks downsample by 8, as SD's VAE does, so latents stay 1/8 of the image.
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=(8, 8, 16, 16),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=1,
            norm_num_groups=8,
            sample_size=512,
        )
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            projection_dim=32,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    # Stable Diffusion 1.5's published scheduler configuration.
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        unet=unet.eval(),
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return pipe
