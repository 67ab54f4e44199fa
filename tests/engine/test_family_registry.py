"""The family registry is consistent (every entry's rules, defaults, samplers, latent formats and
class names), and Stable Diffusion folders and checkpoints are recognised as they were before
the registry: the rules of the previous families.py are kept here as the reference."""

import itertools

import pytest

from tui.engine.families import (FAMILIES, GUIDANCE_KINDS, SD1, SD2, SDXL, ModelFamily, defaults_on_switch, family,
                                 family_defaults, family_from_checkpoint, family_from_configs, family_from_gguf,
                                 family_of_folder)
from tui.engine.preview import LATENT_RGB
from tui.engine.request import GUIDANCE_MAX, GUIDANCE_MIN, SIZE_MAX, SIZE_MIN, STEPS_MAX, STEPS_MIN
from tui.engine.schedulers import scheduler_names

# --- the previous rules (families.py before the registry), labels as their ids ----------------

_LABELS = {"SD 1.x": SD1, "SD 2.x": SD2, "SDXL": SDXL}


def old_from_configs(model_index, unet=None, scheduler=None, name=""):
    unet, scheduler = unet or {}, scheduler or {}
    class_name = str(model_index.get("_class_name", ""))
    if "XL" in class_name or unet.get("addition_embed_type") == "text_time" or "text_encoder_2" in model_index:
        base = "SDXL"
    elif unet.get("cross_attention_dim") == 1024 or (isinstance(unet.get("cross_attention_dim"), list)
                                                     and unet["cross_attention_dim"]
                                                     and all(v == 1024 for v in unet["cross_attention_dim"])):
        base = "SD 2.x"
    else:
        base = "SD 1.x"
    sample = unet.get("sample_size")
    typical = {"SD 1.x": 512, "SD 2.x": 768, "SDXL": 1024}[base]
    native = int(sample) * 8 if isinstance(sample, int) and 16 <= sample <= 256 else typical
    return ModelFamily(_LABELS[base], "turbo" in name.casefold(), native,
                       scheduler.get("prediction_type") == "v_prediction")


def old_from_checkpoint(keys, name=""):
    if not any(key.startswith("model.diffusion_model.") for key in keys):
        return None
    turbo = "turbo" in name.casefold()
    if any(key in keys for key in ("conditioner.embedders.1.model.positional_embedding",
                                   "conditioner.embedders.0.transformer.text_model.embeddings."
                                   "position_embedding.weight")):
        return ModelFamily(SDXL, turbo, 512 if turbo else 1024)
    if "cond_stage_model.model.token_embedding.weight" in keys:
        return ModelFamily(SD2, turbo, 512 if turbo else 768, not turbo)
    return ModelFamily(SD1, turbo, 512)


CLASSES = ["StableDiffusionPipeline", "StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline",
           "StableDiffusionImg2ImgPipeline", "SomeCommunityPipeline", None]
UNETS = [None, {}, {"cross_attention_dim": 768, "sample_size": 64}, {"cross_attention_dim": 1024, "sample_size": 96},
         {"cross_attention_dim": [1024, 1024], "sample_size": 64}, {"cross_attention_dim": [768, 1024]},
         {"cross_attention_dim": 2048, "addition_embed_type": "text_time", "sample_size": 128},
         {"sample_size": 8}, {"sample_size": "64"}]
SCHEDULERS = [None, {"prediction_type": "v_prediction"}, {"prediction_type": "epsilon"}]
NAMES = ["", "stabilityai/sdxl-turbo", "my-model", "SD-Turbo"]


@pytest.mark.parametrize("class_name,second_encoder", itertools.product(CLASSES, [False, True]))
def test_sd_folders_are_recognised_as_before(class_name, second_encoder):
    index = {} if class_name is None else {"_class_name": class_name}
    if second_encoder:
        index["text_encoder_2"] = ["transformers", "CLIPTextModelWithProjection"]
    for unet, scheduler, name in itertools.product(UNETS, SCHEDULERS, NAMES):
        assert family_from_configs(index, unet, scheduler, name) == old_from_configs(index, unet, scheduler, name), \
            (index, unet, scheduler, name)


UNET_KEY = "model.diffusion_model.input_blocks.0.0.weight"
TEXT_KEYS = ["cond_stage_model.transformer.text_model.embeddings.position_embedding.weight",
             "cond_stage_model.model.token_embedding.weight", "conditioner.embedders.1.model.positional_embedding",
             "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight",
             "first_stage_model.decoder.conv_in.weight"]


@pytest.mark.parametrize("with_unet", [False, True])
def test_sd_checkpoints_are_recognised_as_before(with_unet):
    for count in range(len(TEXT_KEYS) + 1):
        for keys in itertools.combinations(TEXT_KEYS, count):
            keys = set(keys) | ({UNET_KEY} if with_unet else set())
            for name in ("model.safetensors", "sd_xl_turbo_1.0.safetensors", "sd_turbo.safetensors"):
                assert family_from_checkpoint(keys, name) == old_from_checkpoint(keys, name), (keys, name)
    assert family_from_checkpoint({"lora_unet_down_blocks_0.alpha"}) is None


def test_switching_defaults_are_as_before():
    sdxl, turbo, sd1 = ModelFamily(SDXL, False, 1024), ModelFamily(SDXL, True, 512), ModelFamily(SD1, False, 512)
    assert defaults_on_switch(None, turbo) == family_defaults(turbo) == {"width": 512, "height": 512, "steps": 1,
                                                                       "guidance": 0.0}
    assert defaults_on_switch(turbo, sd1) == {"width": 512, "height": 512, "steps": 20, "guidance": 7.0}
    assert defaults_on_switch(sd1, sdxl) == {"width": 1024, "height": 1024}
    assert defaults_on_switch(turbo, ModelFamily(SD2, True, 512)) == {"width": 512, "height": 512, "steps": 1,
                                                                      "guidance": 0.0}


# --- the registry's consistency ------------------------------------------------------------------


def test_ids_and_labels_are_unique():
    assert len({f.id for f in FAMILIES}) == len({f.label for f in FAMILIES}) == len(FAMILIES)
    assert all(family(f.id) is f for f in FAMILIES)


@pytest.mark.parametrize("entry", FAMILIES, ids=lambda f: f.id)
def test_each_entry_is_complete_and_within_the_allowed_ranges(entry):
    for defaults in [entry.defaults] + [v.defaults for v in entry.variants]:
        assert SIZE_MIN <= defaults.size <= SIZE_MAX and defaults.size % 8 == 0
        assert STEPS_MIN <= defaults.steps <= STEPS_MAX
        assert GUIDANCE_MIN <= defaults.guidance <= GUIDANCE_MAX
        assert defaults.scheduler in entry.samplers
    assert entry.samplers and set(entry.samplers) <= set(scheduler_names())
    assert entry.latent_format in LATENT_RGB
    assert entry.guidance.kind in GUIDANCE_KINDS
    assert (entry.guidance.argument is None) == (entry.guidance.kind == "none")
    assert entry.pipelines.text_to_image in entry.recognise.pipeline_classes
    assert entry.recognise.pipeline_classes or entry.recognise.folder, "a folder of it must be recognisable"
    assert entry.encoders and all(e.token_limit > 0 and e.width > 0 for e in entry.encoders)
    keys = [e.embedding_key for e in entry.encoders if e.kind == "clip"]
    assert len(keys) < 2 or (None not in keys and len(set(keys)) == len(keys))
    assert len({v.id for v in entry.variants}) == len(entry.variants)


def test_folder_and_checkpoint_rules_do_not_overlap():
    """Every family's own pipeline class with configs of each family is claimed by one family only."""
    samples = {SD1: ({"_class_name": "StableDiffusionPipeline"}, {"unet": {"cross_attention_dim": 768}}),
               SD2: ({"_class_name": "StableDiffusionPipeline"}, {"unet": {"cross_attention_dim": 1024}}),
               SDXL: ({"_class_name": "StableDiffusionXLPipeline"}, {"unet": {"addition_embed_type": "text_time"}})}
    for family_id, (index, configs) in samples.items():
        claims = [f.id for f in FAMILIES if (not f.recognise.pipeline_classes or index["_class_name"]
                                             in f.recognise.pipeline_classes)
                  and f.recognise.folder and f.recognise.folder(index, configs)]
        assert claims == [family_id] and family_of_folder(index, configs).id == family_id
    checkpoints = {SD1: {UNET_KEY, TEXT_KEYS[0]}, SD2: {UNET_KEY, TEXT_KEYS[1]}, SDXL: {UNET_KEY, TEXT_KEYS[2]}}
    for family_id, keys in checkpoints.items():
        assert [f.id for f in FAMILIES if f.recognise.checkpoint and f.recognise.checkpoint(keys)] == [family_id]
    assert family_from_gguf("sdxl").id == SDXL and family_from_gguf("cosmos") is None


def test_class_names_and_lora_loaders_exist_in_diffusers():
    import diffusers

    for entry in FAMILIES:
        for name in (entry.pipelines.text_to_image, entry.pipelines.image_to_image, entry.pipelines.edit,
                     *entry.recognise.pipeline_classes):
            assert name is None or hasattr(diffusers, name), name
        if entry.lora is not None:
            from diffusers import loaders

            mixin = getattr(loaders, entry.lora.loader)
            assert issubclass(getattr(diffusers, entry.pipelines.text_to_image), mixin), entry.id


def test_every_lora_loader_tells_its_families_loras_and_a_shared_label_is_one_kind():
    """A UNet family's LoRAs are told by the cross-attention width, a transformer family's by its layers:
    each family that loads LoRAs has one of the two; families whose LoRAs go by one label share the rule."""
    by_label = {}
    for entry in FAMILIES:
        if entry.lora is not None:
            assert bool(entry.lora.context_width) != bool(entry.lora.layers or entry.lora.fits), entry.id
            if entry.lora.label:
                assert by_label.setdefault(entry.lora.label, entry.lora) == entry.lora, entry.id


def test_previews_unpack_latents_as_flux_packs_them():
    """FLUX.1's own _pack_latents makes the packed layout; spatial() must give back the grid it packed."""
    import torch
    from diffusers import FluxPipeline

    from tui.engine.preview import spatial

    latents = torch.randn(2, 16, 6, 10)  # 48x80 pixels at 8 per latent
    packed = FluxPipeline._pack_latents(latents, 2, 16, 6, 10)
    assert packed.shape == (2, 15, 64)
    assert torch.equal(spatial(packed, 80, 48), latents)
    assert spatial(packed, 48, 80) is None or spatial(packed, 48, 80).shape != latents.shape
    assert torch.equal(spatial(latents.unsqueeze(2), 80, 48), latents)  # Qwen-Image's (b, c, frames, h, w)
    assert spatial(latents, 80, 48) is latents
