"""Prompt weights, BREAK and long prompts: the chunking rules, embeddings checked by hand against
A1111's "Original" emphasis, and their effect on real images from the demo and tiny SDXL pipelines."""

import numpy as np
import pytest
import torch

from tui.engine import Engine, EngineOptions, Finished, GenerationRequest, Notice
from tui.engine.conditioning import prompt_arguments
from tui.engine.families import SD1, SDXL, family
from tui.engine.prompt_weights import TokenChunk, split_into_chunks

SMALL = dict(width=128, height=128, steps=4)
COMMA = 99


def shape(chunks):
    return [len(chunk.tokens) for chunk in chunks]


def test_chunks_hold_75_tokens_and_an_empty_prompt_is_one_empty_chunk():
    assert shape(split_into_chunks([], COMMA)) == [0]
    assert shape(split_into_chunks([(list(range(75)), 1.0)], COMMA)) == [75]
    chunks = split_into_chunks([(list(range(76)), 1.0)], COMMA)
    assert shape(chunks) == [75, 1] and chunks[1].tokens == [75]


def test_a_full_chunk_ends_after_a_comma_at_most_20_tokens_back():
    near = [*range(60), COMMA, *range(100, 114), 200]  # 75 tokens, the comma 61st; then a 76th
    chunks = split_into_chunks([(near, 1.0)], COMMA)
    assert shape(chunks) == [61, 15]
    assert chunks[0].tokens[-1] == COMMA and chunks[1].tokens == [*range(100, 114), 200]
    far = [*range(50), COMMA, *range(100, 124), 200]  # 25 tokens back: too far, cut at 75
    assert shape(split_into_chunks([(far, 1.0)], COMMA)) == [75, 1]


def test_weights_move_with_their_tokens_and_break_ends_a_chunk_where_it_is():
    chunks = split_into_chunks([([1, 2], 1.0), None, ([3], 1.5), None, None, ([4], 0.9)], COMMA)
    assert [(c.tokens, c.weights) for c in chunks] == [([1, 2], [1.0, 1.0]), ([3], [1.5]), ([], []), ([4], [0.9])]
    assert shape(split_into_chunks([None, ([1], 1.0)], COMMA)) == [0, 1]  # as A1111: a leading BREAK too
    assert isinstance(chunks[0], TokenChunk)


def test_a_plain_prompt_is_handed_to_the_pipeline_as_text(demo_engine):
    pipe = demo_engine.pipe
    assert prompt_arguments(pipe, family(SD1), "a red fox", "").kwargs == {"prompt": "a red fox",
                                                                         "negative_prompt": None}
    # Explicit weights of 1 and escaped brackets are plain text too: the syntax is removed.
    assert prompt_arguments(pipe, family(SD1), "(a red fox:1.0)", "\\(blurry\\)").kwargs == {
        "prompt": "a red fox", "negative_prompt": "(blurry)"}


WEIGHTS = np.ones(77)
WEIGHTS[2:5] = 1.5  # "a (red:1.5) [fox]" after the start token and a</w>: r, e, d</w>
WEIGHTS[5:8] = 1 / 1.1  # f, o, x</w>


def _unweighted(encoder, pipe, penultimate=False):
    ids = pipe.tokenizer("a red fox", padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert ids[0, :9].tolist() == [0, *pipe.tokenizer("a red fox", add_special_tokens=False).input_ids, 1]
    with torch.no_grad():
        output = encoder(ids, output_hidden_states=True)
    return (output.hidden_states[-2] if penultimate else output[0])[0].numpy().astype(np.float64)


def test_weighted_sdxl_embeddings_follow_a1111s_original_emphasis_by_hand(tiny_sdxl_pipe):
    pipe = tiny_sdxl_pipe
    embeds = prompt_arguments(pipe, family(SDXL), "a (red:1.5) [fox]", "").kwargs["prompt_embeds"][0].numpy()
    expected = []
    for encoder in (pipe.text_encoder, pipe.text_encoder_2):
        # By hand: the unweighted rows times their weights, then all times (old mean / new mean).
        z = _unweighted(encoder, pipe, penultimate=True)
        weighted = z * WEIGHTS[:, None]
        assert abs(z.mean()) > 0.01 and abs(weighted.mean() - z.mean()) > 1e-4  # the rescale does something
        expected.append(weighted * (z.mean() / weighted.mean()))
    np.testing.assert_allclose(embeds, np.concatenate(expected, axis=1), rtol=1e-5, atol=1e-6)


def test_a_chunk_whose_mean_is_zero_is_weighted_without_the_rescale(demo_engine):
    """The demo model's untrained final layer norm centres every row: the chunk's mean is zero up
    to rounding, and A1111's quotient of two such means would be noise."""
    pipe = demo_engine.pipe
    embeds = prompt_arguments(pipe, family(SD1), "a (red:1.5) [fox]", "").kwargs["prompt_embeds"][0].numpy()
    z = _unweighted(pipe.text_encoder, pipe)
    assert abs(z.mean()) < 1e-6 * np.abs(z).mean()
    np.testing.assert_allclose(embeds, z * WEIGHTS[:, None], rtol=1e-5, atol=1e-6)


def test_an_unweighted_chunk_is_exactly_what_diffusers_encodes(demo_engine, tiny_sdxl_pipe):
    from tui.engine.conditioning import _encode_prompt, _encoders
    from tui.engine.prompt_weights import parse_emphasis

    for pipe, base in ((demo_engine.pipe, family(SD1)), (tiny_sdxl_pipe, family(SDXL))):
        with torch.no_grad():
            embeds, pooled, chunks = _encode_prompt(pipe, _encoders(pipe, base), parse_emphasis("a red fox"))
        reference = pipe.encode_prompt("a red fox", device="cpu", num_images_per_prompt=1,
                                       do_classifier_free_guidance=False)
        assert chunks == 1 and torch.equal(embeds, reference[0])
        if base.id == SDXL:
            assert torch.equal(pooled, reference[2])


def test_long_prompts_are_read_in_chunks_and_the_negative_is_padded_with_the_empty_prompt(demo_engine):
    pipe = demo_engine.pipe
    kwargs = prompt_arguments(pipe, family(SD1), "fox " * 60, "blurry").kwargs  # 180 tokens: 3 chunks
    assert kwargs["prompt_embeds"].shape == (1, 231, 32) == kwargs["negative_prompt_embeds"].shape
    empty = prompt_arguments(pipe, family(SD1), "(x:1.2)", "").kwargs["negative_prompt_embeds"]
    assert torch.equal(kwargs["negative_prompt_embeds"][:, 77:154], empty)
    assert torch.equal(kwargs["negative_prompt_embeds"][:, 154:], empty)
    broken = prompt_arguments(pipe, family(SD1), "a fox BREAK in snow", "").kwargs["prompt_embeds"]
    assert broken.shape == (1, 154, 32)


def image(engine, prompt, negative="", seed=5):
    results = engine.generate(GenerationRequest(prompt, negative_prompt=negative, seed=seed, **SMALL))
    assert len(results) == 1
    return np.asarray(results[0].image).astype(int)


def test_weights_change_the_image_and_a_weight_of_one_does_not(demo_engine):
    plain = image(demo_engine, "a red fox")
    assert np.array_equal(plain, image(demo_engine, "(a red fox:1.0)"))
    assert np.array_equal(plain, image(demo_engine, "a (red:1) fox"))
    heavier = image(demo_engine, "a (red:1.6) fox")
    assert np.abs(heavier - plain).mean() > 0.2
    lighter = image(demo_engine, "a [red] fox")
    assert np.abs(lighter - plain).mean() > 0.05 and not np.array_equal(lighter, heavier)
    assert not np.array_equal(image(demo_engine, "a red fox", "(blurry:1.4)"), image(demo_engine, "a red fox",
                                                                                   "blurry"))


def test_words_after_token_77_change_the_image_and_nothing_is_dropped(demo_engine):
    base = "fox " * 25  # 75 tokens with the byte-level demo tokenizer
    events = []
    results = demo_engine.generate(GenerationRequest(base + "red", seed=5, **SMALL), events.append)
    red = np.asarray(results[0].image).astype(int)
    assert not [e for e in events if isinstance(e, Notice)]
    blue = image(demo_engine, base + "blue")
    assert np.abs(red - blue).mean() > 0.2
    # The prompt is kept as written, syntax and all, for the history and the PNG.
    literal = "a (red:1.5) fox BREAK \\(snow\\)"
    assert demo_engine.generate(GenerationRequest(literal, seed=1, **SMALL))[0].request.prompt == literal


@pytest.fixture(scope="module")
def tiny_sdxl_pipe():
    from tests.tiny_models import build_tiny_sdxl

    return build_tiny_sdxl()


@pytest.fixture(scope="module")
def sdxl_engine(tiny_sdxl_dir):
    engine = Engine(EngineOptions(model=str(tiny_sdxl_dir), preview_max_fps=0))
    engine.load()
    return engine


def test_sdxl_weights_and_long_prompts_use_both_encoders_and_the_pooled_embedding(sdxl_engine):
    pipe = sdxl_engine.pipe
    kwargs = prompt_arguments(pipe, family(SDXL), "a (red:1.5) fox, " + "snow " * 30, "").kwargs
    # Two chunks; 32 + 40 features from the two encoders; the pooled embedding from the second.
    assert kwargs["prompt_embeds"].shape == (1, 154, 72) and kwargs["pooled_prompt_embeds"].shape == (1, 40)
    # An empty negative prompt is zeros, as SDXL's force_zeros_for_empty_prompt asks of diffusers.
    assert not kwargs["negative_prompt_embeds"].any() and not kwargs["negative_pooled_prompt_embeds"].any()
    plain = image(sdxl_engine, "a red fox")
    assert np.array_equal(plain, image(sdxl_engine, "(a red fox:1)"))
    assert np.abs(image(sdxl_engine, "a (red:1.6) fox") - plain).mean() > 0.05
    long_base = "fox " * 25
    assert not np.array_equal(image(sdxl_engine, long_base + "red"), image(sdxl_engine, long_base + "blue"))
    assert isinstance(sdxl_engine.generate(GenerationRequest("x BREAK y", seed=2, **SMALL))[0], Finished)
