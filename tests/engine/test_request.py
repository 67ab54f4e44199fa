import math

import pytest

from tui.engine.request import PROMPT_MAX_CHARS, GenerationRequest, InvalidRequest, validate_request
from tui.engine.schedulers import scheduler_names

BAD = [
    ({"prompt": ""}, "prompt", "empty"),
    ({"prompt": "   \n\t"}, "prompt", "blank"),
    ({"width": 513}, "width", "multiple of 8"),
    ({"width": 56}, "width", "64"),
    ({"height": 2056}, "height", "2048"),
    ({"height": "abc"}, "height", "not a whole number"),
    ({"steps": 0}, "steps", "1..500"),
    ({"steps": 501}, "steps", "1..500"),
    ({"steps": "ten"}, "steps", "not a whole number"),
    ({"steps": 2.5}, "steps", "not a whole number"),
    ({"guidance": math.nan}, "guidance", "finite"),
    ({"guidance": math.inf}, "guidance", "finite"),
    ({"guidance": -0.5}, "guidance", "0 to 50"),
    ({"guidance": 50.5}, "guidance", "0 to 50"),
    ({"guidance": "strong"}, "guidance", "number"),
    ({"seed": -2}, "seed", "0..18446744073709551615"),
    ({"seed": 2**64}, "seed", "0..18446744073709551615"),
    ({"seed": "1e3"}, "seed", "not a whole number"),
    ({"seed": True}, "seed", "not a whole number"),
    ({"count": 0}, "count", "1..100"),
    ({"count": 101}, "count", "1..100"),
    ({"scheduler": "K_WARP"}, "scheduler", "known schedulers are"),
]


@pytest.mark.parametrize("override,field,words", BAD)
def test_each_bad_field_gets_one_message_naming_it(override, field, words):
    with pytest.raises(InvalidRequest) as caught:
        validate_request({"prompt": "a fox", **override})
    problems = caught.value.problems
    assert [p.field for p in problems] == [field]
    message = problems[0].message
    assert message.startswith(field.replace("_", " ") + ":") and words in message
    assert "\n" not in message


def test_unknown_scheduler_message_lists_every_known_one():
    with pytest.raises(InvalidRequest) as caught:
        validate_request({"prompt": "x", "scheduler": "nope"})
    for name in scheduler_names():
        assert name in caught.value.problems[0].message


def test_several_bad_fields_are_all_reported():
    with pytest.raises(InvalidRequest) as caught:
        validate_request({"prompt": "", "width": 7, "steps": 0})
    assert sorted(caught.value.fields) == ["prompt", "steps", "width"]


def test_limits_are_inclusive_and_strings_are_accepted():
    request = validate_request({"prompt": "x", "width": "64", "height": 2048, "steps": "500", "guidance": "0",
                                "seed": str(2**32 - 1), "count": 100, "scheduler": "euler a"})
    assert (request.width, request.height, request.steps, request.guidance) == (64, 2048, 500, 0.0)
    assert request.seed == 2**32 - 1 and request.count == 100 and request.scheduler == "Euler a"


@pytest.mark.parametrize("seed", [None, "random", "", -1, "-1"])
def test_random_seed_spellings(seed):
    assert validate_request({"prompt": "x", "seed": seed}).seed is None


def test_with_seed_draws_once_and_seed_for_counts_up():
    request = GenerationRequest("x").with_seed()
    assert request.seed is not None and request.with_seed() == request
    fixed = GenerationRequest("x", seed=2**64 - 1, count=3)
    assert [fixed.seed_for(i) for i in range(3)] == [2**64 - 1, 0, 1]
    assert 0 <= GenerationRequest("x").with_seed().seed < 2**32  # new random seeds stay short


def test_long_prompts_are_accepted_up_to_the_limit():
    assert validate_request({"prompt": "fox " * (PROMPT_MAX_CHARS // 4)}).prompt.startswith("fox")
    with pytest.raises(InvalidRequest) as caught:
        validate_request({"prompt": "x" * 100_000, "negative_prompt": "y" * (PROMPT_MAX_CHARS + 1)})
    assert [str(p) for p in caught.value.problems] == [
        "prompt: 100,000 characters is too long; the limit is 20,000",
        "negative prompt: 20,001 characters is too long; the limit is 20,000"]


def test_nul_is_refused_with_its_position_and_other_controls_are_kept():
    with pytest.raises(InvalidRequest) as caught:
        validate_request({"prompt": "ab\x00c"})
    assert str(caught.value.problems[0]) == "prompt: contains a NUL character (at position 3); remove it"
    kept = "\x1b[31mred\x07 \u202eevil"
    assert validate_request({"prompt": kept}).prompt == kept


def test_unknown_field_is_rejected():
    with pytest.raises(InvalidRequest) as caught:
        validate_request({"prompt": "x", "stepz": 3})
    assert caught.value.fields == ["stepz"]
