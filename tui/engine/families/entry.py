"""What a family entry says: the dataclasses every family module fills in, and the names they share
(guidance kinds, text encoder kinds, sampler lists). Pure data: no torch, no diffusers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping

from tui.engine.schedulers import DEFAULT_SCHEDULER, scheduler_names

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
    # The edit pipeline is the family's only one and cannot run without a picture to edit
    # (Qwen-Image-Edit's; FLUX.2's also makes images from text alone)
    edit_only: bool = False


@dataclass(frozen=True)
class Recognise:
    """How a model of the family is told apart on disk. ``folder`` and ``checkpoint`` are further
    tests where the names alone cannot tell (SD 1.x and 2.x share their pipeline classes); the
    families' tests must be exclusive, so the order of the registry never decides."""

    pipeline_classes: tuple[str, ...] = ()  # model_index.json "_class_name" values
    folder: Callable[[Mapping[str, Any], Mapping[str, Mapping[str, Any]]], bool] | None = None
    checkpoint: Callable[[Collection[str]], bool] | None = None  # a single file's tensor names
    gguf_architectures: tuple[str, ...] = ()  # general.architecture as ComfyUI-GGUF writes it


Shapes = Mapping[str, tuple[int, ...]]  # a single file's tensor names and shapes


@dataclass(frozen=True)
class SingleFile:
    """How a file holding the family's transformer alone loads (the files BFL, Tongyi-MAI, Qwen and
    ComfyUI publish): diffusers' ``transformer`` class converts it, and the pipeline's other parts
    (text encoders, tokenizers, VAE, scheduler) and the transformer's config come from a diffusers
    repository of the model in the local Hugging Face cache: ``base_repo`` of the file's tensor
    shapes and whether it is the family's distilled variant (FLUX.1 schnell, SD 3.5 Large Turbo)."""

    transformer: str  # a diffusers model class with from_single_file
    base_repo: Callable[[Shapes, bool], str]


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


# A LoRA file's layers: each layer's name as the file spells it, its prefix ("transformer.", kohya's
# "lora_unet_", ComfyUI's "diffusion_model.") and LoRA suffix taken off, with its input and output width
# (None where the file lacks that half). networks.lora_layers reads them.
LoraLayers = Mapping[str, tuple[int | None, int | None]]


@dataclass(frozen=True)
class Lora:
    """How the family loads LoRAs and tells its own. UNet families tell theirs by the cross-attention
    width; transformer families by layer names only their transformer has (``layers``: a dotted name
    whose "." also matches kohya's "_" and "N" any block number, matched at the start of a layer's name)
    or, where names are shared, by a test of the names and widths (``fits``). A file that two kinds of
    LoRA claim, or none, is of no known family and is tried."""

    loader: str  # the diffusers mixin whose load_lora_weights reads the family's LoRAs
    context_width: int | None = None  # the cross-attention width a LoRA for it shows (UNet models)
    label: str = ""  # the name its LoRAs go by, shared by families taking the same ones (FLUX.1 and Kontext)
    layers: tuple[str, ...] = ()
    fits: Callable[[LoraLayers], bool] | None = None


def layer_pattern(name: str) -> re.Pattern[str]:
    """A pattern of ``Lora.layers`` compiled: "." matches "." or kohya's "_", "N" a block number."""
    parts = [r"\d+" if part == "N" else re.escape(part) for part in name.split(".")]
    return re.compile(r"[._]".join(parts) + r"(?:[._]|$)")


def layers_named(layers: LoraLayers, name: str) -> dict[str, tuple[int | None, int | None]]:
    """The layers whose names start with ``name`` (a pattern as in ``Lora.layers``)."""
    pattern = layer_pattern(name)
    return {layer: widths for layer, widths in layers.items() if pattern.match(layer)}


@dataclass(frozen=True)
class Variant:
    """Models of a family distilled or tuned to other settings, told by their name, or by a folder's
    configs or a single file's tensor names where those say (True or False; None: they do not)."""

    id: str
    label: str
    name_contains: str
    defaults: Defaults
    guidance: Guidance | None = None  # its own where it differs from the family's (FLUX.1 schnell: none)
    configs: Callable[[Mapping[str, Mapping[str, Any]]], bool | None] | None = None  # components' configs
    checkpoint: Callable[[Collection[str]], bool | None] | None = None  # a single file's tensor names


@dataclass(frozen=True)
class Precision:
    """The half precision a family is published and run in, and whether float16 gives finite
    images with it; ``source`` says where the facts come from (an issue, a model card)."""

    preferred: str  # "float16" | "bfloat16"
    float16_safe: bool
    source: str


SD_PRECISION = Precision("float16", True, "SD 1.x, 2.x and SDXL are published with fp16 weights")


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
    # The pipeline's prompt embeddings are its CLIP encoders' alone, so conditioning can build them
    # (A1111's weights, long prompts); False where another encoder's join them (SD3's T5): plain text.
    clip_prompt_embeds: bool = True
    # The keyword its text-to-image pipeline takes the output's area by, rescaling height and width to
    # it (FLUX.1 Kontext's max_area, 1024**2 unless given): the engine gives width * height.
    area_argument: str | None = None
    precision: Precision = SD_PRECISION
    # A job's working memory at the default size, beyond the weights, in GB: measured peak minus weights
    # (docs/performance.md); None where it was not measured.
    job_memory_gb: float | None = None
    # Its pipelines pass mu (the shift by image size) to every scheduler, whether it shifts dynamically or
    # not (pipeline_flux.py, pipeline_flux2.py, pipeline_z_image.py, pipeline_qwenimage.py; SD3's only when
    # it does): a sampler without fixed_shift_with_mu then runs only the model's own dynamic shift.
    passes_mu: bool = False
    single_file: SingleFile | None = None  # None: its single files hold the whole pipeline (SD, SDXL)

    def variant(self, variant_id: str) -> Variant | None:
        return next((v for v in self.variants if v.id == variant_id), None)


SD_SAMPLERS = tuple(scheduler_names(flow=False))
FLOW_EULER = "FlowMatch Euler"
FLOW_SAMPLERS = tuple(scheduler_names(flow=True))
# For pipelines that hand the scheduler sigmas of their own, which DPMSolverMultistepScheduler.set_timesteps
# does not take: Z-Image's and Qwen-Image's always, FLUX.1's image to image and Kontext (FLUX.1's and FLUX.2's
# text to image drop them for a scheduler with use_flow_sigmas; pipeline_flux.py, pipeline_flux2.py).
FLOW_SIGMAS_SAMPLERS = (FLOW_EULER, "FlowMatch UniPC")
STANDARD = Defaults(512, STANDARD_STEPS, STANDARD_GUIDANCE, DEFAULT_SCHEDULER)  # what settings start at
