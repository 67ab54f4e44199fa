"""What each registered family makes of the settings: its samplers, the name of its guidance,
whether it reads a negative prompt and takes a shift, and the log's sentences for settings it
ignores. Read from the registry itself, so a new family is covered by being registered."""

import pytest

from tui.client.family_fields import GUIDANCE_LABELS, fields_for, sampler_for, unused_settings
from tui.engine.families import (FAMILIES, FLUX, FLUX2, FLUX2_KLEIN, FLUX_KONTEXT, NO_GUIDANCE, QWEN_IMAGE,
                                 QWEN_IMAGE_EDIT, SD1, SD3, ZIMAGE, ModelFamily)
from tui.engine.schedulers import scheduler_names


@pytest.mark.parametrize("entry", FAMILIES, ids=lambda f: f.id)
def test_every_family_offers_its_own_samplers_and_names_its_guidance(entry):
    fields = fields_for(ModelFamily(entry.id))
    assert fields.samplers == entry.samplers and fields.default_sampler in entry.samplers
    assert fields.guidance_label == GUIDANCE_LABELS[entry.guidance.kind]
    assert fields.negative_prompt == entry.negative_prompt
    assert fields.takes_guidance == (entry.guidance.kind != NO_GUIDANCE)
    for variant in entry.variants:  # a variant's guidance is its own where it has one (FLUX.1 schnell: none)
        kind = (variant.guidance or entry.guidance).kind
        assert fields_for(ModelFamily(entry.id, turbo=True)).takes_guidance == (kind != NO_GUIDANCE)
    assert fields.shift == (set(entry.samplers) <= set(scheduler_names(flow=True)))
    foreign = next(name for name in scheduler_names() if name not in entry.samplers)
    assert sampler_for(fields, foreign) == fields.default_sampler and sampler_for(fields, fields.default_sampler) is None


def test_settings_a_family_ignores_are_said_and_kept():
    sd = fields_for(ModelFamily(SD1))
    assert unused_settings(sd, "blurry", 7.0) == []
    none_negative = next((f for f in FAMILIES if not f.negative_prompt), None)
    if none_negative is not None:
        fields = fields_for(ModelFamily(none_negative.id))
        assert unused_settings(fields, "blurry", 3.5)[0] == (f"negative prompt: {fields.label} models do not read "
                                                            "one; it is kept for other models")
        assert unused_settings(fields, "  ", 3.5) == []
    before_any = fields_for(None)
    assert before_any.samplers == tuple(scheduler_names()) and not before_any.shift


ALL_FLOW = ("FlowMatch Euler", "FlowMatch UniPC", "FlowMatch DPM++ 2M")


@pytest.mark.parametrize("family_id, samplers", [
    (SD3, ALL_FLOW), (FLUX2, ALL_FLOW), (FLUX2_KLEIN, ALL_FLOW),
    (FLUX, ALL_FLOW[:2]), (FLUX_KONTEXT, ALL_FLOW[:2]), (QWEN_IMAGE, ALL_FLOW[:2]), (QWEN_IMAGE_EDIT, ALL_FLOW[:2]),
    (ZIMAGE, ALL_FLOW[:1]),
])
def test_flow_families_list_the_multistep_samplers_their_pipelines_run(family_id, samplers):
    assert fields_for(ModelFamily(family_id)).samplers == samplers
