"""Model families: one registry entry per kind of model (SD 1.x, SD 2.x, SDXL...), each saying
as data (plus a few small functions) how a model of it is recognised on disk, which diffusers
pipelines run it, its default settings, the guidance it takes, its text encoders, its latent
format for previews, its LoRA loader and the samplers it offers (the fields are in entry.py).
Adding a family is one module of this package with its entries, listed in FAMILIES below; the
engine, previews, prompt conditioning, LoRA checks and the picker read these fields instead of
branching on the family.

``ModelFamily`` is what is known of one model: its family's id and the model's own facts
(native size, Turbo, v-prediction), read from config files or a checkpoint's tensor names
without loading any weights.

Pure data and functions of what is on disk: no torch, no diffusers (classes are named, and
resolved only where a pipeline is built), so the model picker can describe dozens of models
instantly and tests can cover every rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Mapping

from tui.engine.families import flux, flux2, qwen_image, sd3, stable_diffusion, z_image
from tui.engine.families.entry import (CFG, CLIP, DISTILLED, FLOW_EULER, FLOW_SAMPLERS, GUIDANCE_KINDS, NO_GUIDANCE,
                                       SD_SAMPLERS, STANDARD, TRUE_CFG, Defaults, Family, Guidance, Lora, Pipelines,
                                       Recognise, TextEncoder, Variant)
from tui.engine.families.flux import FLUX, FLUX_KONTEXT
from tui.engine.families.flux2 import FLUX2, FLUX2_KLEIN, FLUX2_KLEIN_BASE
from tui.engine.families.qwen_image import QWEN_IMAGE, QWEN_IMAGE_EDIT, QWEN_IMAGE_EDIT_PLUS
from tui.engine.families.sd3 import SD3
from tui.engine.families.stable_diffusion import SD1, SD2, SDXL
from tui.engine.families.z_image import ZIMAGE

FAMILIES: tuple[Family, ...] = (*stable_diffusion.FAMILIES, *z_image.FAMILIES, *sd3.FAMILIES, *flux2.FAMILIES,
                                *flux.FAMILIES, *qwen_image.FAMILIES)

__all__ = ["CFG", "CLIP", "DISTILLED", "FAMILIES", "FLOW_EULER", "FLOW_SAMPLERS", "FLUX", "FLUX2", "FLUX2_KLEIN",
           "FLUX2_KLEIN_BASE", "FLUX_KONTEXT", "GUIDANCE_KINDS", "NO_GUIDANCE", "QWEN_IMAGE", "QWEN_IMAGE_EDIT",
           "QWEN_IMAGE_EDIT_PLUS", "SD1", "SD2", "SD3", "SDXL", "SD_SAMPLERS", "STANDARD", "TRUE_CFG", "ZIMAGE",
           "Defaults", "Family", "Guidance", "Lora", "ModelFamily", "Pipelines", "Recognise", "TextEncoder", "Variant",
           "defaults_on_switch", "family", "family_defaults", "family_from_checkpoint", "family_from_configs",
           "family_from_gguf", "family_labels", "family_of_folder", "needs_vae_upcast", "with_family_defaults"]
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
    def guidance(self) -> Guidance:
        """The guidance the model takes: its variant's where that differs from its family's."""
        variant = self.variant
        return variant.guidance if variant and variant.guidance else self.family.guidance

    @property
    def latent_format(self) -> str:
        """Which latent-to-RGB factors previews use."""
        return self.family.latent_format


def _variant_of(entry: Family, name: str, configs: Mapping[str, Mapping[str, Any]] | None = None,
                keys: Collection[str] | None = None) -> Variant | None:
    """The variant the folder's configs or the file's tensor names say the model is, where they
    say; else the one its name contains."""
    folded = name.casefold()
    for variant in entry.variants:
        said = None
        if configs is not None and variant.configs is not None:
            said = variant.configs(configs)
        elif keys is not None and variant.checkpoint is not None:
            said = variant.checkpoint(keys)
        if said if said is not None else variant.name_contains in folded:
            return variant
    return None


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
    variant = _variant_of(entry, name, configs)
    return ModelFamily(entry.id, variant is not None, native, scheduler.get("prediction_type") == "v_prediction")


def family_from_checkpoint(keys: Collection[str], name: str = "") -> ModelFamily | None:
    """The family of an original-format checkpoint from its tensor names, or None when the
    file is not a whole checkpoint of a known family (a LoRA, a VAE, an embedding...)."""
    entry = next((f for f in FAMILIES if f.recognise.checkpoint is not None and f.recognise.checkpoint(keys)), None)
    if entry is None:
        return None
    variant = _variant_of(entry, name, keys=keys)
    size = variant.defaults.size if variant else entry.defaults.size
    return ModelFamily(entry.id, variant is not None, size, entry.checkpoint_v_prediction and variant is None)


def family_from_gguf(architecture: str) -> Family | None:
    """The family of a GGUF file from its ``general.architecture``."""
    return next((f for f in FAMILIES if architecture in f.recognise.gguf_architectures), None)



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
