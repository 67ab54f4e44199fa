"""Model families (SD 1.x, SD 2.x, SDXL, and their Turbo distillations), told apart from
config files or a checkpoint's tensor names without loading any weights, and the
settings each family wants by default.

Pure functions of what is on disk: no torch, no diffusers, so the model picker can
describe dozens of models instantly and tests can cover every rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

SD1, SD2, SDXL = "SD 1.x", "SD 2.x", "SDXL"
STANDARD_STEPS, STANDARD_GUIDANCE = 20, 7.0
TURBO_STEPS, TURBO_GUIDANCE = 1, 0.0

# Tensor names that only one family's original (non-diffusers) checkpoints contain.
_SDXL_KEYS = ("conditioner.embedders.1.model.positional_embedding",
              "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight")
_SD2_KEY = "cond_stage_model.model.token_embedding.weight"
_SD1_KEY = "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"
UNET_PREFIX = "model.diffusion_model."


@dataclass(frozen=True)
class ModelFamily:
    base: str  # SD1 | SD2 | SDXL
    turbo: bool = False
    native_size: int = 512  # the square size the model was trained at
    v_prediction: bool = False

    @property
    def label(self) -> str:
        return f"{self.base} Turbo" if self.turbo else self.base

    @property
    def latent_format(self) -> str:
        """Which latent-to-RGB factors previews use."""
        return "sdxl" if self.base == SDXL else "sd"


def is_turbo_name(name: str) -> bool:
    return "turbo" in name.casefold()


def family_from_configs(model_index: Mapping[str, Any], unet: Mapping[str, Any] | None = None,
                        scheduler: Mapping[str, Any] | None = None, name: str = "") -> ModelFamily:
    """The family of a diffusers folder from its model_index.json, unet/config.json and
    scheduler config (either config may be missing)."""
    unet = unet or {}
    scheduler = scheduler or {}
    class_name = str(model_index.get("_class_name", ""))
    if "XL" in class_name or unet.get("addition_embed_type") == "text_time" or "text_encoder_2" in model_index:
        base = SDXL
    elif unet.get("cross_attention_dim") == 1024 or _is_list_of_1024(unet.get("cross_attention_dim")):
        base = SD2
    else:
        base = SD1
    sample = unet.get("sample_size")
    native = int(sample) * 8 if isinstance(sample, int) and 16 <= sample <= 256 else _typical_size(base)
    return ModelFamily(base, is_turbo_name(name), native, scheduler.get("prediction_type") == "v_prediction")


def _is_list_of_1024(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(v == 1024 for v in value)


def _typical_size(base: str) -> int:
    return {SD1: 512, SD2: 768, SDXL: 1024}[base]


def family_from_checkpoint(keys: Mapping[str, Any] | set[str], name: str = "") -> ModelFamily | None:
    """The family of an original-format checkpoint from its tensor names, or None when the
    file is not a whole Stable Diffusion checkpoint (a LoRA, a VAE, an embedding...)."""
    if not any(key.startswith(UNET_PREFIX) for key in keys):
        return None
    turbo = is_turbo_name(name)
    if any(key in keys for key in _SDXL_KEYS):
        return ModelFamily(SDXL, turbo, 512 if turbo else 1024)
    if _SD2_KEY in keys:
        # SD 2.x weights do not say whether they are the 512 base or the 768 v-model; the
        # 768 model is the common one, and its config is what diffusers picks for them.
        return ModelFamily(SD2, turbo, 512 if turbo else 768, not turbo)
    return ModelFamily(SD1, turbo, 512)


def family_defaults(family: ModelFamily) -> dict[str, Any]:
    """Settings to apply when a model of ``family`` is selected; the user can change each."""
    size = family.native_size
    if family.turbo:
        return {"width": size, "height": size, "steps": TURBO_STEPS, "guidance": TURBO_GUIDANCE}
    return {"width": size, "height": size}


def with_family_defaults(request, family: ModelFamily, chosen: set[str]):
    """``request`` with the family's size (and Turbo's steps and guidance) for the fields the
    user did not choose (``chosen``: flags and config.toml keys), and a line saying what changed
    (None when nothing did): an SDXL checkpoint should not silently render at 512x512."""
    from dataclasses import replace

    changes = {key: value for key, value in family_defaults(family).items()
               if key not in chosen and getattr(request, key) != value}
    if not changes:
        return request, None
    summary = ", ".join(f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"
                        for key, value in changes.items())
    return replace(request, **changes), f"{family.label} defaults: {summary} (flags or config.toml override them)"


def defaults_on_switch(old: ModelFamily | None, new: ModelFamily) -> dict[str, Any]:
    """What changes when switching from ``old`` to ``new``: the size always follows the
    model, and steps and guidance go back to standard values when leaving a Turbo model
    (1 step at guidance 0 would ruin a normal model's images)."""
    values = family_defaults(new)
    if old is not None and old.turbo and not new.turbo:
        values.update(steps=STANDARD_STEPS, guidance=STANDARD_GUIDANCE)
    return values


def needs_vae_upcast(family: ModelFamily, dtype: str, vae_force_upcast: bool | None) -> bool:
    """Whether the VAE must decode in float32. SDXL's original VAE overflows in float16 and
    decodes to black images; diffusers upcasts when the VAE config says ``force_upcast``.
    A VAE converted to be float16-safe (such as sdxl-vae-fp16-fix) says false, and is trusted;
    a config that does not say (single-file loads of old configs) is treated as unsafe."""
    if dtype != "float16" or family.base != SDXL:
        return False
    return vae_force_upcast is not False
