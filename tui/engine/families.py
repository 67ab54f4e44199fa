"""Model families: one registry entry per kind of model (SD 1.x, SD 2.x, SDXL...), each saying
as data (plus a few small functions) how a model of it is recognised on disk, which diffusers
pipelines run it, its default settings, the guidance it takes, its text encoders, its latent
format for previews, its LoRA loader and the samplers it offers. Adding a family is one entry
in FAMILIES; the engine, previews, prompt conditioning, LoRA checks and the picker read these
fields instead of branching on the family.

``ModelFamily`` is what is known of one model: its family's id and the model's own facts
(native size, Turbo, v-prediction), read from config files or a checkpoint's tensor names
without loading any weights.

Pure data and functions of what is on disk: no torch, no diffusers (classes are named, and
resolved only where a pipeline is built), so the model picker can describe dozens of models
instantly and tests can cover every rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping

from tui.engine.schedulers import DEFAULT_SCHEDULER, scheduler_names

SD1, SD2, SDXL, ZIMAGE = "sd1", "sd2", "sdxl", "zimage"  # registry ids
STANDARD_STEPS, STANDARD_GUIDANCE = 20, 7.0
TURBO_STEPS, TURBO_GUIDANCE = 1, 0.0

# Guidance kinds: how a family's pipeline reads the request's guidance value.
CFG = "cfg"  # classifier-free guidance: a second pass with the negative prompt
DISTILLED = "distilled"  # a guidance embedding the model was distilled with (FLUX): no second pass
TRUE_CFG = "true_cfg"  # classifier-free guidance under its own argument (Qwen-Image's true_cfg_scale)
NO_GUIDANCE = "none"
GUIDANCE_KINDS = (CFG, DISTILLED, TRUE_CFG, NO_GUIDANCE)
CLIP = "clip"  # text encoder kinds; conditioning.py weights prompts (A1111's syntax) for CLIP only


@dataclass(frozen=True)
class Pipelines:
    """diffusers pipeline class names per task; None where the family has no such pipeline."""

    text_to_image: str
    image_to_image: str | None = None
    edit: str | None = None


@dataclass(frozen=True)
class Recognise:
    """How a model of the family is told apart on disk. ``folder`` and ``checkpoint`` are further
    tests where the names alone cannot tell (SD 1.x and 2.x share their pipeline classes); the
    families' tests must be exclusive, so the order of the registry never decides."""

    pipeline_classes: tuple[str, ...] = ()  # model_index.json "_class_name" values
    folder: Callable[[Mapping[str, Any], Mapping[str, Mapping[str, Any]]], bool] | None = None
    checkpoint: Callable[[Collection[str]], bool] | None = None  # a single file's tensor names
    gguf_architectures: tuple[str, ...] = ()  # general.architecture as ComfyUI-GGUF writes it


@dataclass(frozen=True)
class Defaults:
    size: int  # the square size the family was trained at
    steps: int
    guidance: float
    scheduler: str


@dataclass(frozen=True)
class Guidance:
    kind: str  # one of GUIDANCE_KINDS
    argument: str | None  # the pipeline's keyword for the value; None when it takes none
    off_at: float = 1.0  # at or below this value the pipeline runs no guidance


@dataclass(frozen=True)
class TextEncoder:
    component: str  # the pipeline's attribute: "text_encoder", "text_encoder_2"
    tokenizer: str
    kind: str  # CLIP, or another name for encoders sdtui hands plain text
    token_limit: int  # tokens one encoding reads, start and end tokens included
    width: int  # its hidden size, which a textual-inversion embedding must match
    penultimate: bool = False  # the prompt embedding is the layer before last
    pooled: bool = False  # it gives the pooled embedding
    embedding_key: str | None = None  # its vectors' name in a multi-encoder embedding file


@dataclass(frozen=True)
class Lora:
    loader: str  # the diffusers mixin whose load_lora_weights reads the family's LoRAs
    context_width: int | None = None  # the cross-attention width a LoRA for it shows (UNet models)


@dataclass(frozen=True)
class Variant:
    """Models of a family distilled or tuned to other settings, told by their name."""

    id: str
    label: str
    name_contains: str
    defaults: Defaults


@dataclass(frozen=True)
class Family:
    id: str
    label: str
    pipelines: Pipelines
    recognise: Recognise
    defaults: Defaults
    guidance: Guidance
    negative_prompt: bool  # whether the pipeline takes a negative prompt
    encoders: tuple[TextEncoder, ...]
    latent_format: str  # a key of preview.LATENT_RGB
    lora: Lora | None
    samplers: tuple[str, ...]  # names in schedulers.SCHEDULERS
    variants: tuple[Variant, ...] = ()
    vae_float16_overflow: bool = False  # its VAE gives NaN (black) images decoding in float16
    checkpoint_v_prediction: bool = False  # a single file of it is taken as v-prediction (its configs are)

    def variant(self, variant_id: str) -> Variant | None:
        return next((v for v in self.variants if v.id == variant_id), None)


# --- Stable Diffusion 1.x, 2.x and XL --------------------------------------------------------

UNET_PREFIX = "model.diffusion_model."
# Tensor names that only one family's original (non-diffusers) checkpoints contain.
_SDXL_KEYS = ("conditioner.embedders.1.model.positional_embedding",
              "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight")
_SD2_KEY = "cond_stage_model.model.token_embedding.weight"
_SD1_KEY = "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"


def _is_list_of_1024(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(v == 1024 for v in value)


def _sdxl_folder(index: Mapping[str, Any], configs: Mapping[str, Mapping[str, Any]]) -> bool:
    unet = configs.get("unet") or {}
    return ("XL" in str(index.get("_class_name", "")) or unet.get("addition_embed_type") == "text_time"
            or "text_encoder_2" in index)


def _sd2_folder(index: Mapping[str, Any], configs: Mapping[str, Mapping[str, Any]]) -> bool:
    context = (configs.get("unet") or {}).get("cross_attention_dim")
    return not _sdxl_folder(index, configs) and (context == 1024 or _is_list_of_1024(context))


def _sd1_folder(index: Mapping[str, Any], configs: Mapping[str, Mapping[str, Any]]) -> bool:
    return not _sdxl_folder(index, configs) and not _sd2_folder(index, configs)


def _has_unet(keys: Collection[str]) -> bool:
    return any(key.startswith(UNET_PREFIX) for key in keys)


def _sdxl_checkpoint(keys: Collection[str]) -> bool:
    return _has_unet(keys) and any(key in keys for key in _SDXL_KEYS)


def _sd2_checkpoint(keys: Collection[str]) -> bool:
    return _has_unet(keys) and not _sdxl_checkpoint(keys) and _SD2_KEY in keys


def _sd1_checkpoint(keys: Collection[str]) -> bool:
    # SD 1.x text encoder key (_SD1_KEY) or none: a UNet with neither of the others' is read as SD 1.x
    return _has_unet(keys) and not _sdxl_checkpoint(keys) and not _sd2_checkpoint(keys)


SD_SAMPLERS = tuple(scheduler_names(flow=False))
FLOW_SAMPLERS = tuple(scheduler_names(flow=True))
FLOW_EULER = "FlowMatch Euler"
_SD_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline")
_SDXL_PIPELINES = ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline",
                   "StableDiffusionXLInpaintPipeline")
_SD_GUIDANCE = Guidance(CFG, "guidance_scale", 1.0)  # CFG when guidance_scale > 1 (pipeline_stable_diffusion.py)


def _turbo(size: int) -> Variant:
    # Turbo models are distilled to 1-4 steps without guidance; guidance 0 turns CFG off.
    return Variant("turbo", "Turbo", "turbo", Defaults(size, TURBO_STEPS, TURBO_GUIDANCE, DEFAULT_SCHEDULER))


FAMILIES: tuple[Family, ...] = (
    Family(
        id=SD1, label="SD 1.x",
        pipelines=Pipelines("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
        recognise=Recognise(_SD_PIPELINES, _sd1_folder, _sd1_checkpoint, ("sd1",)),
        defaults=Defaults(512, STANDARD_STEPS, STANDARD_GUIDANCE, DEFAULT_SCHEDULER),
        guidance=_SD_GUIDANCE, negative_prompt=True,
        encoders=(TextEncoder("text_encoder", "tokenizer", CLIP, 77, 768),),
        latent_format="sd", lora=Lora("StableDiffusionLoraLoaderMixin", 768), samplers=SD_SAMPLERS,
        variants=(_turbo(512),)),
    Family(
        id=SD2, label="SD 2.x",
        pipelines=Pipelines("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
        recognise=Recognise(_SD_PIPELINES, _sd2_folder, _sd2_checkpoint),
        defaults=Defaults(768, STANDARD_STEPS, STANDARD_GUIDANCE, DEFAULT_SCHEDULER),
        guidance=_SD_GUIDANCE, negative_prompt=True,
        encoders=(TextEncoder("text_encoder", "tokenizer", CLIP, 77, 1024),),
        latent_format="sd", lora=Lora("StableDiffusionLoraLoaderMixin", 1024), samplers=SD_SAMPLERS,
        variants=(_turbo(512),),
        # SD 2.x weights do not say whether they are the 512 base or the 768 v-model; the 768 model
        # is the common one, and its config is what diffusers picks for them.
        checkpoint_v_prediction=True),
    Family(
        id=SDXL, label="SDXL",
        pipelines=Pipelines("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"),
        recognise=Recognise(_SDXL_PIPELINES, _sdxl_folder, _sdxl_checkpoint, ("sdxl",)),
        defaults=Defaults(1024, STANDARD_STEPS, STANDARD_GUIDANCE, DEFAULT_SCHEDULER),
        guidance=_SD_GUIDANCE, negative_prompt=True,
        # Both encoders read the layer before last; the second (OpenCLIP bigG) gives the pooled
        # embedding (pipeline_stable_diffusion_xl.py, encode_prompt).
        encoders=(TextEncoder("text_encoder", "tokenizer", CLIP, 77, 768, penultimate=True, embedding_key="clip_l"),
                  TextEncoder("text_encoder_2", "tokenizer_2", CLIP, 77, 1280, penultimate=True, pooled=True,
                              embedding_key="clip_g")),
        latent_format="sdxl", lora=Lora("StableDiffusionXLLoraLoaderMixin", 2048), samplers=SD_SAMPLERS,
        variants=(_turbo(512),),
        vae_float16_overflow=True),
    # Z-Image (Tongyi-MAI): facts from diffusers' pipelines/z_image/pipeline_z_image.py.
    Family(
        id=ZIMAGE, label="Z-Image",
        pipelines=Pipelines("ZImagePipeline", "ZImageImg2ImgPipeline"),
        recognise=Recognise(("ZImagePipeline", "ZImageImg2ImgPipeline", "ZImageInpaintPipeline")),
        # Base: the pipeline's own defaults (50 steps, guidance_scale 5.0, 1024 px).
        defaults=Defaults(1024, 50, 5.0, FLOW_EULER),
        # CFG is pred = pos + g * (pos - neg), on when guidance_scale > 0: 0 is off, not 1.
        guidance=Guidance(CFG, "guidance_scale", 0.0), negative_prompt=True,
        # Qwen3 (4B: hidden size 2560); prompts are padded to max_sequence_length, 512 by default.
        encoders=(TextEncoder("text_encoder", "tokenizer", "qwen3", 512, 2560),),
        # Its VAE is FLUX.1's: 16 channels, previewed with FLUX's factors (ComfyUI's ZImage latent format).
        latent_format="flux", lora=Lora("ZImageLoraLoaderMixin"), samplers=FLOW_SAMPLERS,
        # Turbo: 8 steps at guidance 0 (the pipeline's docstring example).
        variants=(Variant("turbo", "Turbo", "turbo", Defaults(1024, 8, 0.0, FLOW_EULER)),)),
)

_BY_ID = {family.id: family for family in FAMILIES}
FALLBACK = SD1  # what a folder no family recognises is taken for, as before the registry


def family(family_id: str) -> Family:
    """The registry entry ``family_id`` names; KeyError for an unknown one."""
    return _BY_ID[family_id]


def family_labels() -> dict[str, str]:
    return {f.id: f.label for f in FAMILIES}


# --- one model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFamily:
    """What the engine knows of one model: its family (an id in FAMILIES) and its own facts."""

    base: str  # the family's id: SD1 | SD2 | SDXL | ...
    turbo: bool = False  # its family's "turbo" variant
    native_size: int = 512  # the square size the model was trained at
    v_prediction: bool = False

    @property
    def family(self) -> Family:
        return family(self.base)

    @property
    def variant(self) -> Variant | None:
        return self.family.variant("turbo") if self.turbo else None

    @property
    def label(self) -> str:
        variant = self.variant
        return f"{self.family.label} {variant.label}" if variant else self.family.label

    @property
    def defaults(self) -> Defaults:
        variant = self.variant
        return variant.defaults if variant else self.family.defaults

    @property
    def latent_format(self) -> str:
        """Which latent-to-RGB factors previews use."""
        return self.family.latent_format


def _variant_of(entry: Family, name: str) -> Variant | None:
    folded = name.casefold()
    return next((v for v in entry.variants if v.name_contains in folded), None)


def family_of_folder(model_index: Mapping[str, Any], configs: Mapping[str, Mapping[str, Any]]) -> Family:
    """The family whose pipeline classes name the folder's and whose further test (if any) agrees;
    families that recognise folders by their configs alone are asked next."""
    class_name = str(model_index.get("_class_name", ""))
    named = [f for f in FAMILIES if class_name in f.recognise.pipeline_classes]
    by_configs = [f for f in FAMILIES if f.recognise.folder is not None and f not in named]
    for entry in named + by_configs:
        test = entry.recognise.folder
        if test is None or test(model_index, configs):
            return entry
    return family(FALLBACK)


def family_from_configs(model_index: Mapping[str, Any], unet: Mapping[str, Any] | None = None,
                        scheduler: Mapping[str, Any] | None = None, name: str = "",
                        **components: Mapping[str, Any]) -> ModelFamily:
    """The family of a diffusers folder from its model_index.json, unet/config.json and
    scheduler config (either config may be missing; other components' configs by name)."""
    scheduler = scheduler or {}
    configs = {"unet": unet or {}, "scheduler": scheduler, **components}
    entry = family_of_folder(model_index, configs)
    sample = configs["unet"].get("sample_size")  # UNet models: latents of sample_size, 8 pixels each
    native = int(sample) * 8 if isinstance(sample, int) and 16 <= sample <= 256 else entry.defaults.size
    variant = _variant_of(entry, name)
    return ModelFamily(entry.id, variant is not None, native, scheduler.get("prediction_type") == "v_prediction")


def family_from_checkpoint(keys: Collection[str], name: str = "") -> ModelFamily | None:
    """The family of an original-format checkpoint from its tensor names, or None when the
    file is not a whole checkpoint of a known family (a LoRA, a VAE, an embedding...)."""
    entry = next((f for f in FAMILIES if f.recognise.checkpoint is not None and f.recognise.checkpoint(keys)), None)
    if entry is None:
        return None
    variant = _variant_of(entry, name)
    size = variant.defaults.size if variant else entry.defaults.size
    return ModelFamily(entry.id, variant is not None, size, entry.checkpoint_v_prediction and variant is None)


def family_from_gguf(architecture: str) -> Family | None:
    """The family of a GGUF file from its ``general.architecture``."""
    return next((f for f in FAMILIES if architecture in f.recognise.gguf_architectures), None)


# --- settings ----------------------------------------------------------------------------------

STANDARD = Defaults(512, STANDARD_STEPS, STANDARD_GUIDANCE, DEFAULT_SCHEDULER)  # what settings start at


def _sampling(defaults: Defaults) -> dict[str, Any]:
    return {"steps": defaults.steps, "guidance": defaults.guidance, "scheduler": defaults.scheduler}


def family_defaults(model: ModelFamily) -> dict[str, Any]:
    """Settings to apply when ``model`` is selected; the user can change each. The size always;
    steps, guidance and scheduler where the model's differ from the standard ones."""
    standard = _sampling(STANDARD)
    values: dict[str, Any] = {"width": model.native_size, "height": model.native_size}
    values.update({k: v for k, v in _sampling(model.defaults).items() if v != standard[k]})
    return values


def with_family_defaults(request, model: ModelFamily, chosen: set[str]):
    """``request`` with the family's size (and Turbo's steps and guidance) for the fields the
    user did not choose (``chosen``: flags and config.toml keys), and a line saying what changed
    (None when nothing did): an SDXL checkpoint should not silently render at 512x512."""
    from dataclasses import replace

    changes = {key: value for key, value in family_defaults(model).items()
               if key not in chosen and getattr(request, key) != value}
    if not changes:
        return request, None
    summary = ", ".join(f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"
                        for key, value in changes.items())
    return replace(request, **changes), f"{model.label} defaults: {summary} (flags or config.toml override them)"


def defaults_on_switch(old: ModelFamily | None, new: ModelFamily) -> dict[str, Any]:
    """What changes when switching from ``old`` to ``new``: the size always follows the model,
    and steps, guidance and scheduler follow it when the two models' differ (1 step at guidance 0,
    a Turbo model's, would ruin a normal model's images)."""
    values = family_defaults(new)
    if old is not None:
        before, after = _sampling(old.defaults), _sampling(new.defaults)
        values.update({k: v for k, v in after.items() if before[k] != v})
    return values


def needs_vae_upcast(model: ModelFamily, dtype: str, vae_force_upcast: bool | None) -> bool:
    """Whether the VAE must decode in float32. SDXL's original VAE overflows in float16 and
    decodes to black images; diffusers upcasts when the VAE config says ``force_upcast``.
    A VAE converted to be float16-safe (such as sdxl-vae-fp16-fix) says false, and is trusted;
    a config that does not say (single-file loads of old configs) is treated as unsafe."""
    if dtype != "float16" or not model.family.vae_float16_overflow:
        return False
    return vae_force_upcast is not False
