"""Tiny real pipelines for model-management tests: an SDXL pipeline small enough to run on
the CPU in a second, and an exporter that writes any tiny pipeline as an original-format
single-file checkpoint (the layout model sites distribute), so diffusers' single-file
loader is exercised the way a user's download would exercise it.
"""

from __future__ import annotations

import re
from pathlib import Path

from tui.engine.demo import _byte_characters, _byte_level_vocab


# Special tokens of Qwen's tokenizers that Z-Image's chat template uses.
QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")
# Enough of Qwen3's chat template for apply_chat_template(messages, add_generation_prompt=True,
# enable_thinking=...), as pipeline_z_image.py calls it.
QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}"
    "{% endif %}")


def qwen_tokenizer(specials: tuple[str, ...] = QWEN_SPECIALS):
    """A Qwen2Tokenizer over a byte-level vocabulary (every byte a token, no merges), so any text
    tokenizes, with ``specials`` (the first is its end of text) and Qwen's chat template; returns it
    and its vocabulary size."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    vocab = {char: index for index, char in enumerate(_byte_characters())}
    for special in specials:
        vocab[special] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], model_max_length=4096)
    tokenizer.add_special_tokens({"additional_special_tokens": [AddedToken(s, special=True)
                                                                for s in specials[1:]]})
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer, len(vocab)


def z_image_transformer(dim: int, heads: int, axes_dims: tuple[int, int, int], layers: int = 2):
    """A ZImageTransformer2DModel of random weights (from torch's generator as it stands) ``dim`` wide, with the
    tiny pipeline's 16-wide caption features."""
    import torch
    from diffusers import ZImageTransformer2DModel

    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=dim, n_layers=layers, n_refiner_layers=1,
        n_heads=heads, n_kv_heads=heads, norm_eps=1e-5, qk_norm=True, cap_feat_dim=16, rope_theta=256.0,
        t_scale=1000.0, axes_dims=list(axes_dims), axes_lens=[256, 32, 32])
    with torch.no_grad():  # made with torch.empty: random memory, NaN at times
        transformer.x_pad_token.copy_(torch.ones_like(transformer.x_pad_token))
        transformer.cap_pad_token.copy_(torch.ones_like(transformer.cap_pad_token))
    return transformer.eval()


def build_tiny_z_image():
    """A Z-Image pipeline of random weights, a few hundred kilobytes (the shapes of diffusers'
    tests/pipelines/z_image/test_z_image.py), with Z-Image-Turbo's scheduler."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImagePipeline
    from transformers import Qwen3Config, Qwen3Model

    tokenizer, vocab_size = qwen_tokenizer()
    torch.manual_seed(0)
    transformer = z_image_transformer(dim=32, heads=2, axes_dims=(8, 4, 4))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[32, 64], layers_per_block=1,
        latent_channels=16, norm_num_groups=32, sample_size=32, scaling_factor=0.3611, shift_factor=0.1159)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False)
    text_encoder = Qwen3Model(Qwen3Config(
        hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
        head_dim=8, vocab_size=vocab_size, max_position_embeddings=512))
    return ZImagePipeline(scheduler=scheduler, vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                          transformer=transformer.eval())


def build_tiny_sdxl():
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    vocab = _byte_level_vocab()
    # The two text encoders differ in width, as SDXL's do, because diffusers tells them
    # apart in a single file by the width of their position embeddings.
    first, second, time_dim = 32, 40, 8

    def text_config(hidden, layers):
        return CLIPTextConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=37,
                              num_attention_heads=4, num_hidden_layers=layers, max_position_embeddings=77,
                              projection_dim=hidden, bos_token_id=0, eos_token_id=1, pad_token_id=1,
                              hidden_act="gelu")

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        unet = UNet2DConditionModel(
            sample_size=32, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=time_dim, transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=6 * time_dim + second, cross_attention_dim=first + second,
            norm_num_groups=32)
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 16, 16),
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            layers_per_block=1, norm_num_groups=8, sample_size=256, scaling_factor=0.13025,
                            force_upcast=True)
        text_encoder = CLIPTextModel(text_config(first, 2))
        # Ten layers: diffusers recognises an SDXL checkpoint by its second encoder's tenth block.
        text_encoder_2 = CLIPTextModelWithProjection(text_config(second, 10))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       num_train_timesteps=1000, steps_offset=1, timestep_spacing="leading")
    return StableDiffusionXLPipeline(vae=vae.eval(), text_encoder=text_encoder.eval(),
                                     text_encoder_2=text_encoder_2.eval(), tokenizer=tokenizer,
                                     tokenizer_2=tokenizer, unet=unet.eval(), scheduler=scheduler)


# --- diffusers layout -> original (LDM) single-file layout ------------------------------

_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
           ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
_UNET_FLAT = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
              "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
              "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}
_VAE_ATTENTION = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))


def _rename(text: str, pairs) -> str:
    for old, new in pairs:
        text = re.sub(rf"(^|\.){re.escape(old)}\.", rf"\g<1>{new}.", text)
    return text


def unet_to_original(state: dict, layers_per_block: int) -> dict:
    per_block = layers_per_block + 1
    attention_up_blocks = {int(m.group(1)) for k in state if (m := re.match(r"up_blocks\.(\d+)\.attentions", k))}
    out = {}
    for key, value in state.items():
        head, _, tail = key.rpartition(".")  # tail: weight | bias
        if head in _UNET_FLAT:
            out[f"{_UNET_FLAT[head]}.{tail}"] = value
            continue
        if m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            b, j, rest = int(m[1]), int(m[2]), m[3]
            out[f"input_blocks.{1 + b * per_block + j}.0.{_rename(rest, _RESNET)}"] = value
        elif m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
            b, j, rest = int(m[1]), int(m[2]), m[3]
            out[f"input_blocks.{1 + b * per_block + j}.1.{rest}"] = value
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            out[f"input_blocks.{(int(m[1]) + 1) * per_block}.0.op.{m[2]}"] = value
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
            out[f"middle_block.{0 if m[1] == '0' else 2}.{_rename(m[2], _RESNET)}"] = value
        elif m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
            out[f"middle_block.1.{m[1]}"] = value
        elif m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            b, j, rest = int(m[1]), int(m[2]), m[3]
            out[f"output_blocks.{b * per_block + j}.0.{_rename(rest, _RESNET)}"] = value
        elif m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
            b, j, rest = int(m[1]), int(m[2]), m[3]
            out[f"output_blocks.{b * per_block + j}.1.{rest}"] = value
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            b = int(m[1])
            slot = 2 if b in attention_up_blocks else 1
            out[f"output_blocks.{b * per_block + layers_per_block}.{slot}.conv.{m[2]}"] = value
        else:
            raise KeyError(f"no original-format name for unet key {key}")
    return out


def vae_to_original(state: dict, up_blocks: int) -> dict:
    out = {}
    for key, value in state.items():
        key = key.replace("conv_norm_out", "norm_out")
        if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            key = f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            key = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            key = f"decoder.up.{up_blocks - 1 - int(m[1])}.block.{m[2]}.{m[3]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            key = f"decoder.up.{up_blocks - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key):
            key = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", key):
            key = f"{m[1]}.mid.attn_1.{_rename(m[2], _VAE_ATTENTION)}"
            if value.ndim == 2:  # the original attention is 1x1 convolutions
                value = value[:, :, None, None]
        out[key.replace("conv_shortcut", "nin_shortcut")] = value
    return out


def _text_model_keys(state: dict) -> dict:
    """transformers 5 flattened CLIPTextModel's keys; original checkpoints keep ``text_model.``."""
    return {k if k.startswith(("text_model.", "text_projection")) else f"text_model.{k}": v
            for k, v in state.items()}


def open_clip_to_original(state: dict) -> dict:
    import torch

    state = _text_model_keys(state)
    out = {"token_embedding.weight": state["text_model.embeddings.token_embedding.weight"],
           "positional_embedding": state["text_model.embeddings.position_embedding.weight"],
           "ln_final.weight": state["text_model.final_layer_norm.weight"],
           "ln_final.bias": state["text_model.final_layer_norm.bias"],
           "text_projection": state["text_projection.weight"].T.contiguous()}
    layers = {int(m[1]) for k in state if (m := re.match(r"text_model\.encoder\.layers\.(\d+)\.", k))}
    for i in layers:
        src, dst = f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat(
                [state[f"{src}self_attn.{p}_proj.{kind}"] for p in "qkv"])
            out[f"{dst}attn.out_proj.{kind}"] = state[f"{src}self_attn.out_proj.{kind}"]
            out[f"{dst}ln_1.{kind}"] = state[f"{src}layer_norm1.{kind}"]
            out[f"{dst}ln_2.{kind}"] = state[f"{src}layer_norm2.{kind}"]
            out[f"{dst}mlp.c_fc.{kind}"] = state[f"{src}mlp.fc1.{kind}"]
            out[f"{dst}mlp.c_proj.{kind}"] = state[f"{src}mlp.fc2.{kind}"]
    return out


def save_single_file(pipe, path: Path) -> Path:
    """Write ``pipe`` (a tiny SD 1.x or SDXL pipeline) as one original-format .safetensors file."""
    from safetensors.torch import save_file

    tensors = {}

    def put(prefix: str, state: dict) -> None:
        for key, value in state.items():
            tensors[prefix + key] = value.detach().clone().contiguous()

    put("model.diffusion_model.", unet_to_original(pipe.unet.state_dict(), pipe.unet.config.layers_per_block))
    put("first_stage_model.", vae_to_original(pipe.vae.state_dict(), len(pipe.vae.config.up_block_types)))
    text = _text_model_keys(pipe.text_encoder.state_dict())
    text = {k: v for k, v in text.items() if not k.endswith("position_ids")}
    if getattr(pipe, "text_encoder_2", None) is not None:
        put("conditioner.embedders.0.transformer.", text)
        put("conditioner.embedders.1.model.", open_clip_to_original(pipe.text_encoder_2.state_dict()))
    else:
        put("cond_stage_model.transformer.", text)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def z_image_to_original(state: dict) -> dict:
    """ZImageTransformer2DModel's tensors under Tongyi-MAI's original names, the inverse of diffusers'
    convert_z_image_transformer_checkpoint_to_diffusers: fused qkv, attention.out, q_norm/k_norm."""
    import torch

    out = {}
    for key, value in state.items():
        if re.search(r"\.attention\.to_[kv]\.weight$", key):
            continue
        if key.endswith(".attention.to_q.weight"):
            base = key.removesuffix("to_q.weight")
            out[base + "qkv.weight"] = torch.cat([state[base + f"to_{p}.weight"] for p in "qkv"])
            continue
        key = key.replace("all_x_embedder.2-1.", "x_embedder.").replace("all_final_layer.2-1.", "final_layer.")
        key = key.replace(".attention.to_out.0.", ".attention.out.")
        key = key.replace(".attention.norm_q.", ".attention.q_norm.")
        key = key.replace(".attention.norm_k.", ".attention.k_norm.")
        out[key] = value
    return out


def hub_cache_with(cache: Path, folder: Path, repo_id: str, configs_only: bool = False) -> Path:
    """A Hugging Face cache layout under ``cache`` holding ``folder`` as ``repo_id``'s main
    revision (only its config and tokenizer files when ``configs_only``)."""
    import shutil

    repo = cache / ("models--" + repo_id.replace("/", "--"))
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / revision
    if configs_only:
        for file in folder.rglob("*"):
            if file.is_file() and file.suffix in (".json", ".txt"):
                target = snapshot / file.relative_to(folder)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target)
    else:
        shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return cache


# --- LoRAs and embeddings for the tiny pipelines -------------------------------------------


def save_tiny_lora(unet, path: Path, seed: int = 3, kohya: bool = True, rank: int = 4, text_encoder=None) -> Path:
    """A random LoRA for ``unet``'s attention layers (and ``text_encoder``'s, when given), saved
    as kohya's trainer writes them (``lora_unet_..._to_q.lora_down.weight`` with an ``alpha``,
    ``lora_te_...`` for the text encoder, what model sites mostly carry) or in diffusers' own
    layout. The models are left as they were."""
    import torch
    from safetensors.torch import save_file

    parts = [("unet", "lora_unet_", unet, ["to_q", "to_k", "to_v", "to_out.0"])]
    if text_encoder is not None:
        parts.append(("text_encoder", "lora_te_", text_encoder, ["q_proj", "k_proj", "v_proj", "out_proj"]))
    tensors = {}
    for number, (part, kohya_prefix, model, targets) in enumerate(parts):
        for key, value in _random_lora_state(model, targets, seed + number, rank).items():
            if not kohya:
                tensors[f"{part}.{key}"] = value.contiguous()
                continue
            module = key.replace(".lora_A.weight", "").replace(".lora_B.weight", "")
            if part == "text_encoder" and not module.startswith("text_model."):
                module = "text_model." + module  # kohya names CLIP's layers as transformers 4 nested them
            name = kohya_prefix + module.replace(".", "_")
            tensors[f"{name}.{'lora_down' if '.lora_A.' in key else 'lora_up'}.weight"] = value.contiguous()
            tensors[f"{name}.alpha"] = torch.tensor(float(rank))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path


def save_tiny_transformer_lora(pipe, path: Path, targets: list[str], seed: int = 3, rank: int = 4) -> Path:
    """A random LoRA on ``targets`` of ``pipe``'s transformer, saved by the pipeline class's own
    ``save_lora_weights``: diffusers' layout (``transformer.<layer>.lora_A.weight``)."""
    state = _random_lora_state(pipe.transformer, targets, seed, rank)
    type(pipe).save_lora_weights(path.parent, transformer_lora_layers=state, weight_name=path.name)
    return path


def save_tiny_kohya_flux_lora(transformer, path: Path, seed: int = 6, rank: int = 4) -> Path:
    """A random FLUX.1 LoRA of ``transformer``'s double blocks as kohya's sd-scripts write them: the
    original (BFL) layer names (``lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight``, q, k and v
    in one) with an ``alpha``. Single blocks are left out: diffusers' converter splits their linear1 at
    FLUX.1-dev's widths (lora_conversion_utils.py, _convert_kohya_flux_lora_to_diffusers)."""
    import torch
    from safetensors.torch import save_file

    width = transformer.inner_dim
    mlp = transformer.transformer_blocks[0].ff.net[0].proj.out_features
    shapes = {"img_attn_qkv": (width, 3 * width), "img_attn_proj": (width, width), "img_mlp_0": (width, mlp),
              "img_mlp_2": (mlp, width)}
    shapes.update({name.replace("img", "txt"): shape for name, shape in shapes.items()})
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for block in range(len(transformer.transformer_blocks)):
        for name, (inputs, outputs) in shapes.items():
            layer = f"lora_unet_double_blocks_{block}_{name}"
            tensors[f"{layer}.lora_down.weight"] = torch.randn(rank, inputs, generator=generator) / inputs ** 0.5
            tensors[f"{layer}.lora_up.weight"] = torch.randn(outputs, rank, generator=generator)
            tensors[f"{layer}.alpha"] = torch.tensor(float(rank))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def _random_lora_state(model, targets: list[str], seed: int, rank: int) -> dict:
    """peft's state dict of a random LoRA on a copy of ``model``'s ``targets``."""
    import copy

    import torch
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    model = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=targets)
        model = inject_adapter_in_model(config, model)
    return get_peft_model_state_dict(model)


def save_tiny_embedding(path: Path, widths: tuple[int, ...], vectors: int = 2, seed: int = 4) -> Path:
    """A random textual-inversion embedding: A1111's ``emb_params`` for one width, SDXL's
    ``clip_l`` and ``clip_g`` for two."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    if len(widths) == 1:
        tensors = {"emb_params": torch.randn(vectors, widths[0], generator=generator)}
    else:
        tensors = {"clip_l": torch.randn(vectors, widths[0], generator=generator),
                   "clip_g": torch.randn(vectors, widths[1], generator=generator)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path
