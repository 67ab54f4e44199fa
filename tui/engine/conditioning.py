"""Prompt embeddings as AUTOMATIC1111 builds them, so an imported A1111 prompt means here what it
meant there: emphasis weights, BREAK, and prompts longer than CLIP's 77 positions.

A1111's rules ("Original" emphasis, its default): each 75-token chunk is encoded on its own with a
start and an end token and padding; each token's embedding is multiplied by its weight, and the
chunk is then scaled back to its mean before weighting (unless that mean is zero to rounding, see
MEANINGLESS_MEAN); the chunks are joined end to end, which
the UNet's cross-attention reads as one longer sequence. For SDXL both text encoders read the same
chunks (penultimate layer, as diffusers and A1111 use), their features side by side, and the pooled
embedding comes from the second encoder's first chunk. When the prompt and the negative prompt have
different numbers of chunks, the shorter is padded with the empty prompt's embedding.

A plain prompt (no weight other than 1, no BREAK, 75 tokens or fewer) is handed to the pipeline as
text: diffusers then encodes it itself, exactly as a bare diffusers call would.

Why not compel: it weights a token by scaling its distance from the empty prompt's embedding and
masks down-weighted tokens, which is InvokeAI's rule, not A1111's, so an A1111 prompt would not
give A1111's embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from tui.engine.families import CLIP, Family
from tui.engine.prompt_weights import (CHUNK_TOKENS, TokenChunk, is_weighted, parse_emphasis, plain_text,
                                       split_into_chunks)


@dataclass(frozen=True)
class _Encoder:
    tokenizer: Any
    text_encoder: Any
    penultimate: bool  # the layer before last (SDXL's), without the final layer norm
    pooled: bool  # the encoder that gives the pooled embedding (SDXL's second)
    component: str = ""  # the pipeline's attribute


@dataclass(frozen=True)
class PromptArguments:
    """What to pass the pipeline for the prompt and the negative prompt, and why (for the log)."""

    kwargs: dict[str, Any]
    notes: tuple[str, ...] = ()


def _encoders(pipe, family: Family) -> list[_Encoder]:
    """The family's CLIP text encoders the pipeline has (SDXL's refiner has only the second), told by
    their tokenizers: an encoder freed from memory between prompts (text_encoders.py) keeps its own."""
    found = [_Encoder(getattr(pipe, e.tokenizer, None), getattr(pipe, e.component, None), e.penultimate, e.pooled,
                      e.component) for e in family.encoders if e.kind == CLIP]
    return [encoder for encoder in found if encoder.tokenizer is not None]


def token_ids(pipe, tokenizer, text: str) -> list[int]:
    """``text``'s tokens without the start and end tokens, a loaded embedding's name spread over
    its vectors' tokens as diffusers spreads it."""
    convert = getattr(pipe, "maybe_convert_prompt", None)
    text = convert(text, tokenizer) if convert else text
    return tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids


def prompt_arguments(pipe, family: Family, prompt: str, negative: str,
                     before_encoding: Callable[[], None] = lambda: None) -> PromptArguments:
    """The pipeline arguments for ``prompt`` and ``negative`` (either in A1111's syntax);
    ``before_encoding`` runs before sdtui's own embeddings need the text encoders."""
    pieces, negative_pieces = parse_emphasis(prompt), parse_emphasis(negative)
    text, negative_text = plain_text(pieces), plain_text(negative_pieces)
    plain = {"prompt": text, "negative_prompt": negative_text or None} if family.negative_prompt else {"prompt": text}
    if not family.clip_prompt_embeds:  # its embeddings hold another encoder's too (SD3's T5)
        notes = _cut_notes(pipe, family, text, negative_text)
        if is_weighted(pieces) or is_weighted(negative_pieces):
            notes.insert(0, f"{family.label} prompts are read as plain text: sdtui weights CLIP-only embeddings, "
                            "and its embeddings also hold T5's")
        return PromptArguments(plain, tuple(notes))
    encoders = _encoders(pipe, family)
    if not encoders:
        notes = _cut_notes(pipe, family, text, negative_text)
        if is_weighted(pieces) or is_weighted(negative_pieces):
            notes.insert(0, f"{family.label} models have no CLIP text encoder sdtui can weight; the prompt is "
                            "read without its weights")
        return PromptArguments(plain, tuple(notes))
    counts = [max(len(token_ids(pipe, e.tokenizer, t)) for e in encoders) for t in (text, negative_text)]
    if not (is_weighted(pieces) or is_weighted(negative_pieces)) and max(counts) <= CHUNK_TOKENS:
        return PromptArguments(plain)
    before_encoding()
    encoders = [replace(e, text_encoder=getattr(pipe, e.component)) for e in encoders]
    return _embedded(pipe, encoders, pieces, negative_pieces, counts)


_ENCODER_NAMES = {CLIP: "CLIP", "clip-pooled": "CLIP", "t5": "T5", "qwen3": "Qwen3", "qwen2.5-vl": "Qwen2.5-VL", "mistral": "Mistral"}


def _cut_notes(pipe, family: Family, text: str, negative_text: str) -> list[str]:
    """A line for each prompt that one of the family's text encoders will cut (the pipeline
    truncates to the encoder's limit without saying so), with its token count."""
    notes = []
    for encoder in family.encoders:
        tokenizer = getattr(pipe, encoder.tokenizer, None)
        if tokenizer is None:
            continue
        readable = encoder.token_limit - (2 if _ENCODER_NAMES.get(encoder.kind) == "CLIP" else 0)  # its start, end
        for label, value in (("prompt", text), ("negative prompt", negative_text)):
            count = len(tokenizer(value, add_special_tokens=False, truncation=False, verbose=False).input_ids) \
                if value else 0
            note = f"{label}: {count} tokens; {family.label}'s {_ENCODER_NAMES.get(encoder.kind, encoder.kind)} text " \
                   f"encoder reads the first " \
                   f"{readable}, the rest is cut"
            if count > readable and note not in notes:  # SDXL-like pairs of CLIP encoders say it once
                notes.append(note)
    return notes


def _embedded(pipe, encoders: list[_Encoder], pieces, negative_pieces, counts: list[int]) -> PromptArguments:
    import torch

    zeros_for_empty = not plain_text(negative_pieces) and bool(pipe.config.get("force_zeros_for_empty_prompt"))
    with torch.no_grad():
        embeds, pooled, chunks = _encode_prompt(pipe, encoders, pieces)
        if zeros_for_empty:  # SDXL's own rule for an empty negative prompt, kept so it means the same here
            negative_embeds, negative_pooled = torch.zeros_like(embeds), torch.zeros_like(pooled)
            negative_chunks = chunks
        else:
            negative_embeds, negative_pooled, negative_chunks = _encode_prompt(pipe, encoders, negative_pieces)
        if chunks != negative_chunks:
            empty, _, _ = _encode_prompt(pipe, encoders, parse_emphasis(""))
            longest = max(chunks, negative_chunks)
            embeds = _pad(embeds, empty, longest - chunks)
            negative_embeds = _pad(negative_embeds, empty, longest - negative_chunks)
    kwargs = {"prompt_embeds": embeds, "negative_prompt_embeds": negative_embeds}
    if pooled is not None:
        kwargs.update(pooled_prompt_embeds=pooled, negative_pooled_prompt_embeds=negative_pooled)
    notes = [_describe("prompt", pieces, counts[0], chunks)]
    if plain_text(negative_pieces) or is_weighted(negative_pieces):
        notes.append(_describe("negative prompt", negative_pieces, counts[1], negative_chunks))
    return PromptArguments(kwargs, tuple(notes))


def _describe(label: str, pieces, count: int, chunks: int) -> str:
    weights = sorted({round(weight, 3) for _, weight in pieces if weight not in (1.0, -1.0)})
    breaks = sum(1 for _, weight in pieces if weight == -1.0)
    parts = [f"{count} tokens in {chunks} chunk{'s' if chunks != 1 else ''} of {CHUNK_TOKENS}"]
    if breaks:
        parts.append(f"{breaks} BREAK{'s' if breaks != 1 else ''}")
    if weights:
        parts.append("weights " + ", ".join(f"{w:g}" for w in weights))
    return f"{label}: " + ", ".join(parts) + " (A1111's rules)"


def _encode_prompt(pipe, encoders: list[_Encoder], pieces) -> tuple[Any, Any, int]:
    """The embeddings of one prompt from every encoder, side by side; its pooled embedding (or
    None); and its number of chunks."""
    import torch

    outputs, pooled, chunk_count = [], None, 0
    for encoder in encoders:
        chunks = _chunks(pipe, encoder.tokenizer, pieces)
        embeds, encoder_pooled = encode_chunks(encoder, chunks)
        outputs.append(embeds)
        pooled = encoder_pooled if encoder.pooled else pooled
        chunk_count = len(chunks)
    return torch.cat(outputs, dim=-1), pooled, chunk_count


def _chunks(pipe, tokenizer, pieces) -> list[TokenChunk]:
    token_pieces = [None if weight == -1.0 else (token_ids(pipe, tokenizer, text), weight) for text, weight in pieces]
    return split_into_chunks(token_pieces, _comma(tokenizer))


def _comma(tokenizer) -> int | None:
    """The id of CLIP's "," word token (None if the vocabulary lacks it), looked up alone rather
    than by building the whole 49,408-entry vocabulary."""
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    return None if comma == tokenizer.unk_token_id else comma


def encode_chunks(encoder: _Encoder, chunks: list[TokenChunk]):
    """Each chunk encoded on its own as [start, tokens, end, padding], weighted and scaled back to
    its unweighted mean; the chunks joined along the sequence. Returns (embeddings, pooled)."""
    import torch

    tokenizer, model = encoder.tokenizer, encoder.text_encoder
    start, end = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
    embeds, pooled = [], None
    for chunk in chunks:
        fill = CHUNK_TOKENS - len(chunk.tokens)
        ids = torch.tensor([[start, *chunk.tokens, end] + [pad] * fill], device=model.device)
        output = model(ids, output_hidden_states=encoder.penultimate)
        z = output.hidden_states[-2] if encoder.penultimate else output[0]
        if pooled is None and encoder.pooled:
            pooled = output[0]
        if any(weight != 1.0 for weight in chunk.weights):
            weights = torch.tensor([1.0, *chunk.weights, 1.0] + [1.0] * fill, dtype=z.dtype, device=z.device)
            z = _rescaled(z * weights.reshape(1, -1, 1), z.mean(), z.abs().mean())
        embeds.append(z)
    return torch.cat(embeds, dim=1), pooled


# A mean this small next to the values' size is rounding noise, and dividing by it would scale
# the chunk by a random factor (even flip its sign). Trained CLIP models have means around a tenth
# of their size; an untrained final layer norm (the demo model's) gives a mean of exactly zero.
MEANINGLESS_MEAN = 1e-4


def _rescaled(weighted, mean, size):
    """``weighted`` scaled back to the unweighted chunk's ``mean``, as A1111 does, where both
    means are large enough for their ratio to mean something."""
    new_mean = weighted.mean()
    if min(abs(float(mean)), abs(float(new_mean))) <= MEANINGLESS_MEAN * float(size):
        return weighted
    return weighted * (mean / new_mean)


def _pad(embeds, empty, repeats: int):
    import torch

    return torch.cat([embeds, empty.repeat(1, repeats, 1)], dim=1) if repeats else embeds
