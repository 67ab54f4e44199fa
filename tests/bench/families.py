"""The new model families at their published sizes: sdtui's engine against bare diffusers, time and
peak GPU memory, side by side in one run.

Run: python -m tests.bench.families [--family zimage|flux2-klein|flux|sd35|qwen-image ...] [--repeats N]
                                    [--device cuda] [--smoke]

Each family's published architecture (Z-Image-Turbo 6 B, FLUX.2 klein 4B, FLUX.1 dev 12 B, SD 3.5
Large 8 B, Qwen-Image 20 B, with their text encoders and VAEs) is built on the GPU in bfloat16 with
random weights; tokenizers are byte-level ones built here, as in the tests. The engine is handed that
pipeline (a 40 GB model is not written to disk and read back to time a call) under the model's Hub
name, which is what tells its variant (Turbo), so the family, its defaults (size, steps, guidance,
sampler) and everything the engine does on a job are what a user gets. On the same pipeline it
alternates:
  bare    ``pipe(...)`` at the family's default size, steps and guidance, with a fresh scheduler;
  engine  ``Engine.generate`` of the same request, with live previews (4 per second) and memory sampling.
Peak GPU memory is torch's ``max_memory_allocated`` over each call; the weights are what the loaded
pipeline holds. ``--smoke`` builds each family's tiny test pipeline on the CPU instead and runs one
pair at 64x64 and 2 steps, to prove the benchmark still runs. Writes bench-results/families.json.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tests.bench import save_result

PROMPT = "a red fox in the snow, golden hour"


def _randomise(*modules) -> None:
    """Weights of a plausible scale: matrices N(0, 0.02), norm scales 1, biases 0. Some parameters
    are made with torch.empty (Z-Image's pad tokens), whose memory may hold NaN; a NaN image would
    send the engine into its float32 re-decode and time something bare diffusers never runs."""
    import torch

    with torch.no_grad():
        for module in modules:
            for name, parameter in module.named_parameters():
                if parameter.dim() >= 2:
                    parameter.normal_(0.0, 0.02)
                elif name.endswith("bias"):
                    parameter.zero_()
                else:
                    parameter.fill_(1.0)


def _built(device: str, make: Callable[[], dict]) -> dict:
    """``make()``'s modules created on ``device`` in bfloat16 and given random weights."""
    import torch

    torch.manual_seed(0)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            modules = make()
            _randomise(*[m for m in modules.values() if isinstance(m, torch.nn.Module)])
    finally:
        torch.set_default_dtype(before)
    return {name: module.eval() if hasattr(module, "eval") else module for name, module in modules.items()}


def _clip_l(projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                            num_hidden_layers=12, max_position_embeddings=77, projection_dim=768,
                            hidden_act="quick_gelu", bos_token_id=0, eos_token_id=1, pad_token_id=1)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _clip_g():
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    return CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
        max_position_embeddings=77, projection_dim=1280, hidden_act="gelu", bos_token_id=0, eos_token_id=1,
        pad_token_id=1))


def _t5_xxl():
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                                   feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
                                   decoder_start_token_id=0))


def _qwen3_4b(causal: bool):
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

    config = Qwen3Config(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=128, vocab_size=151936, max_position_embeddings=40960,
                         rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)
    return (Qwen3ForCausalLM if causal else Qwen3Model)(config)


def _flux1_vae(scaling: float = 0.3611, shift: float = 0.1159):
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, layers_per_block=2, sample_size=1024,
                         block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=scaling, shift_factor=shift,
                         use_quant_conv=False, use_post_quant_conv=False)


def published_z_image_turbo(device: str):
    """diffusers' ZImageTransformer2DModel as published (6.15 B), Qwen3-4B, FLUX.1's VAE, static shift 3."""
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel

    from tests.tiny_models import qwen_tokenizer

    parts = _built(device, lambda: dict(
        transformer=ZImageTransformer2DModel(
            all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=3840, n_layers=30, n_refiner_layers=2,
            n_heads=30, n_kv_heads=30, norm_eps=1e-5, qk_norm=True, cap_feat_dim=2560, rope_theta=256.0,
            t_scale=1000.0, axes_dims=[32, 48, 48], axes_lens=[1024, 512, 512]),
        text_encoder=_qwen3_4b(causal=False), vae=_flux1_vae()))
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False)
    return ZImagePipeline(scheduler=scheduler, tokenizer=qwen_tokenizer()[0], **parts)


def published_flux2_klein_4b(device: str):
    """FLUX.2 klein 4B: 5 double and 20 single blocks of 24 heads, Qwen3-4B (layers 9, 18, 27 stacked:
    7680 wide), FLUX.2's 32-channel VAE; distilled (no guidance)."""
    from diffusers import (AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline,
                           Flux2Transformer2DModel)

    from tests.tiny_models import qwen_tokenizer

    parts = _built(device, lambda: dict(
        transformer=Flux2Transformer2DModel(
            patch_size=1, in_channels=128, num_layers=5, num_single_layers=20, attention_head_dim=128,
            num_attention_heads=24, joint_attention_dim=7680, timestep_guidance_channels=256, mlp_ratio=3.0,
            axes_dims_rope=(32, 32, 32, 32), rope_theta=2000, guidance_embeds=False),
        text_encoder=_qwen3_4b(causal=True), vae=AutoencoderKLFlux2()))
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True)
    return Flux2KleinPipeline(scheduler=scheduler, tokenizer=qwen_tokenizer()[0], is_distilled=True, **parts)


def published_flux1_dev(device: str):
    """FLUX.1 dev: the 12 B FluxTransformer2DModel (19 double, 38 single blocks, guidance embedding),
    CLIP-L and T5-XXL, its 16-channel VAE, dynamic shift."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTokenizer

    from tests.tiny_flux import t5_tokenizer
    from tui.engine.demo import _byte_level_vocab

    parts = _built(device, lambda: dict(
        transformer=FluxTransformer2DModel(guidance_embeds=True), text_encoder=_clip_l(), text_encoder_2=_t5_xxl(),
        vae=_flux1_vae()))
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096)
    return FluxPipeline(scheduler=scheduler, tokenizer=CLIPTokenizer(vocab=_byte_level_vocab(), merges=[],
                                                                     model_max_length=77),
                        tokenizer_2=t5_tokenizer()[0], **parts)


def published_sd35_large(device: str):
    """SD 3.5 Large: the 8 B MMDiT (38 blocks of 38 heads, RMS q/k norm), CLIP-L, CLIP-G and T5-XXL,
    SD3's 16-channel VAE, shift 3."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTokenizer

    from tests.tiny_sd3 import t5_tokenizer
    from tui.engine.demo import _byte_level_vocab

    parts = _built(device, lambda: dict(
        transformer=SD3Transformer2DModel(
            sample_size=128, patch_size=2, in_channels=16, num_layers=38, attention_head_dim=64,
            num_attention_heads=38, joint_attention_dim=4096, caption_projection_dim=2432, pooled_projection_dim=2048,
            out_channels=16, pos_embed_max_size=192, qk_norm="rms_norm"),
        text_encoder=_clip_l(projection=True), text_encoder_2=_clip_g(), text_encoder_3=_t5_xxl(),
        vae=_flux1_vae(scaling=1.5305, shift=0.0609)))
    clip = CLIPTokenizer(vocab=_byte_level_vocab(), merges=[], model_max_length=77)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    return StableDiffusion3Pipeline(scheduler=scheduler, tokenizer=clip, tokenizer_2=clip,
                                    tokenizer_3=t5_tokenizer()[0], **parts)


def published_qwen_image(device: str):
    """Qwen-Image: the 20 B QwenImageTransformer2DModel (60 blocks; diffusers' defaults are its
    published config), Qwen2.5-VL 7B with its vision tower, the Wan-2.1-style VAE, Qwen-Image's
    exponential dynamic shift."""
    from diffusers import (AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline,
                           QwenImageTransformer2DModel)
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from tests.tiny_qwen_image import qwen_vl_tokenizer

    tokenizer, _ = qwen_vl_tokenizer()
    ids = {key: tokenizer.convert_tokens_to_ids(token) for key, token in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                     "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
                     "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 128000,
                     "bos_token_id": None, "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
                     "pad_token_id": tokenizer.pad_token_id,
                     "rope_scaling": {"mrope_section": [16, 24, 24], "rope_type": "default", "type": "default"}},
        vision_config={"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                       "out_hidden_size": 3584, "fullatt_block_indexes": [7, 15, 23, 31], "window_size": 112,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
        vocab_size=152064, **ids)
    parts = _built(device, lambda: dict(
        transformer=QwenImageTransformer2DModel(), text_encoder=Qwen2_5_VLForConditionalGeneration(config),
        vae=AutoencoderKLQwenImage()))
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
        base_image_seq_len=256, max_image_seq_len=8192, time_shift_type="exponential", shift_terminal=0.02)
    return QwenImagePipeline(scheduler=scheduler, tokenizer=tokenizer, **parts)


def _tiny_z_image(device: str):
    from tests.tiny_models import build_tiny_z_image

    return build_tiny_z_image()


def _tiny_flux2_klein(device: str):
    from tests.tiny_flux2 import build_tiny_flux2_klein

    return build_tiny_flux2_klein()


def _tiny_flux1(device: str):
    from tests.tiny_flux import build_tiny_flux

    return build_tiny_flux()


def _tiny_sd35(device: str):
    from tests.tiny_sd3 import build_tiny_sd3

    return build_tiny_sd3()


def _tiny_qwen_image(device: str):
    from tests.tiny_qwen_image import build_tiny_qwen_image

    return build_tiny_qwen_image()


@dataclass(frozen=True)
class Architecture:
    hub_name: str  # the model's name, which is what tells its variant (Z-Image-Turbo: Turbo's defaults)
    published: Callable[[str], Any]
    tiny: Callable[[str], Any]


ARCHITECTURES = {
    "zimage": Architecture("Z-Image-Turbo", published_z_image_turbo, _tiny_z_image),
    "flux2-klein": Architecture("FLUX.2-klein-4B", published_flux2_klein_4b, _tiny_flux2_klein),
    "flux": Architecture("FLUX.1-dev", published_flux1_dev, _tiny_flux1),
    "sd35": Architecture("stable-diffusion-3.5-large", published_sd35_large, _tiny_sd35),
    "qwen-image": Architecture("Qwen-Image", published_qwen_image, _tiny_qwen_image),
}


def _engine_with(pipe, folder: Path, device: str, dtype: str):
    """An Engine that loads ``pipe`` (already built on ``device``) as the model at ``folder``."""
    from tui.engine import Engine, EngineOptions
    from tui.engine.models import Loader

    class PrebuiltEngine(Engine):
        def _loader(self, source, on_event, cancel, dtype, device):
            return Loader(lambda torch_dtype: pipe)

    return PrebuiltEngine(EngineOptions(model=str(folder), device=device, dtype=dtype, previews=True,
                                        preview_max_fps=4.0))


def bare_call(pipe, engine, request):
    """``pipe(...)`` as bare diffusers is called for ``request`` (the family's default sampler, a fresh
    scheduler, the same seed and guidance the engine gives), taking the steps to run."""
    import torch

    from tui.engine.schedulers import build_scheduler, find_scheduler

    model = engine.family_info
    scheduler = build_scheduler(find_scheduler(model.defaults.scheduler), engine._base_scheduler_config)
    prompts = {"prompt": request.prompt, **({"negative_prompt": ""} if model.family.negative_prompt else {})}

    def bare(run_steps: int = request.steps) -> None:
        tapped, pipe.scheduler = pipe.scheduler, scheduler
        try:
            pipe(prompt=request.prompt, num_inference_steps=run_steps, **engine._guidance(request.guidance, prompts),
                 **engine._size(request.width, request.height),
                 generator=torch.Generator("cpu").manual_seed(request.seed))
        finally:
            pipe.scheduler = tapped

    return bare


def _weights_gb(pipe) -> dict[str, float]:
    import torch

    return {name: round(sum(p.numel() * p.element_size() for p in module.parameters()) / 1e9, 2)
            for name, module in pipe.components.items() if isinstance(module, torch.nn.Module)}


def run_family(key: str, device: str, repeats: int, smoke: bool) -> dict:
    import torch

    from tui.engine import GenerationRequest
    architecture = ARCHITECTURES[key]
    cuda = device == "cuda"
    began = time.perf_counter()
    pipe = (architecture.tiny if smoke else architecture.published)(device)
    built_s = time.perf_counter() - began
    folder = Path(tempfile.mkdtemp(prefix="sdtui-family-")) / architecture.hub_name
    folder.mkdir()
    engine = _engine_with(pipe, folder, device, "float32" if device == "cpu" else "bfloat16")
    engine.load()
    model = engine.family_info
    defaults = model.defaults
    size, steps = (64, 2) if smoke else (defaults.size, defaults.steps)
    request = GenerationRequest(PROMPT, seed=7, steps=steps, width=size, height=size, scheduler=defaults.scheduler,
                                guidance=defaults.guidance)

    bare = bare_call(pipe, engine, request)

    def through_engine(run_steps: int = steps) -> None:
        from dataclasses import replace

        assert len(engine.generate(replace(request, steps=run_steps))) == 1

    def timed(call) -> tuple[float, int]:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        call()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start, torch.cuda.max_memory_allocated() if cuda else 0

    for call in (bare, through_engine):  # warm-up at the size: kernels, autotuning, the tapped scheduler
        call(min(2, steps))
    runs: dict[str, list[tuple[float, int]]] = {"bare": [], "engine": []}
    for _ in range(repeats):
        runs["bare"].append(timed(bare))
        runs["engine"].append(timed(through_engine))
    seconds = {name: statistics.median(t for t, _ in values) for name, values in runs.items()}
    peaks = {name: max(p for _, p in values) for name, values in runs.items()}
    result = {
        "family": model.label, "model": architecture.hub_name, "size": size, "steps": steps,
        "guidance": request.guidance, "guidance_kind": model.guidance.kind, "scheduler": defaults.scheduler,
        "repeats": repeats, "built_s": round(built_s, 1),
        "weights_gb": _weights_gb(pipe),
        "bare_s": round(seconds["bare"], 3), "engine_s": round(seconds["engine"], 3),
        "time_ratio": round(seconds["engine"] / seconds["bare"], 4),
        "peak_gb": {name: round(value / 1e9, 2) for name, value in peaks.items()},
        "peak_ratio": round(peaks["engine"] / peaks["bare"], 4) if peaks["bare"] else None,
        "runs": runs,
    }
    engine.unload()
    engine = pipe = None  # the next family needs the memory
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def report(result: dict) -> str:
    weights = result["weights_gb"]
    line = (f"{result['family']:<14} {result['model']:<28} {result['size']}x{result['size']}, "
            f"{result['steps']:>2} steps, {result['guidance_kind']} {result['guidance']:g}: "
            f"bare {result['bare_s']:7.3f} s, engine "
            f"{result['engine_s']:7.3f} s, ratio {result['time_ratio']:.3f}")
    if result["peak_ratio"] is not None:
        line += (f"; peak bare {result['peak_gb']['bare']:.1f} GB, engine {result['peak_gb']['engine']:.1f} GB, "
                 f"ratio {result['peak_ratio']:.3f}")
    return line + f"\n{'':15}weights {sum(weights.values()):.1f} GB: " + ", ".join(
        f"{name} {gb:.2f}" for name, gb in weights.items())


def results_header(device: str) -> dict:
    """The machine a family benchmark runs on, and a fresh sdtui home for its engines."""
    import torch

    os.environ["SDTUI_HOME"] = str(Path(tempfile.mkdtemp(prefix="sdtui-bench-")) / "home")
    return {"device": torch.cuda.get_device_name(0) if device == "cuda" else f"{device} ({os.cpu_count()} cores)",
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "families": []}


def family_arguments(repeats: int, smoke: str) -> argparse.ArgumentParser:
    """The flags every benchmark over the published architectures takes."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--family", action="append", choices=tuple(ARCHITECTURES), help="default: all")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--smoke", action="store_true", help=smoke)
    return parser


def run(families: list[str], device: str, repeats: int, smoke: bool) -> dict:
    results = results_header(device)
    for key in families:
        result = run_family(key, device, repeats, smoke)
        print(report(result), flush=True)
        results["families"].append(result)
    return results


def main() -> None:
    args = family_arguments(3, "tiny pipelines on the CPU, one pair at 64x64, 2 steps").parse_args()
    device, repeats = ("cpu", 1) if args.smoke else (args.device, args.repeats)
    results = run(args.family or list(ARCHITECTURES), device, repeats, args.smoke)
    save_result("families.json", results)


if __name__ == "__main__":
    main()
