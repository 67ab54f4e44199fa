"""AUTOMATIC1111's emphasis syntax, read into (text, weight) pieces.

The rules, as A1111's wiki ("Attention/emphasis") and its prompt parser define them:
``(text)`` multiplies the weight by 1.1 and ``[text]`` divides it by 1.1, nesting multiplies;
``(text:1.3)`` sets a factor of 1.3 for what is inside; ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\``
are literal characters; a bracket left open at the end still applies to the text after it, and a
closing one with nothing open is text; ``BREAK`` (upper case, a word on its own, the spaces around
it dropped) ends a 75-token chunk early.
Neighbouring pieces of equal weight are merged. Prompt editing (``[a:b:0.5]``) and alternation
(``[a|b]``) are a separate A1111 feature and are not read here: their brackets count as emphasis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

UP = 1.1
DOWN = 1 / 1.1
BREAK = "BREAK"  # a piece with this text and a weight of -1 marks a chunk break

# An escaped character, a weight that closes a round bracket, a bracket, or plain text.
_TOKENS = re.compile(r"""
    \\(?P<escaped>.)
  | (?P<weight>:\s*(?P<number>[+-]?(?:\d+\.?\d*|\.\d+))\s*\))
  | (?P<bracket>[()\[\]])
  | (?P<text>[^\\()\[\]:]+|.)
""", re.VERBOSE | re.DOTALL)
_BREAK = re.compile(r"\s*\bBREAK\b\s*")


def parse_emphasis(prompt: str) -> list[tuple[str, float]]:
    """``prompt`` as (text, weight) pieces; a BREAK is the piece ("BREAK", -1.0)."""
    pieces: list[list] = []
    rounds: list[int] = []  # where each open "(" began, as an index into pieces
    squares: list[int] = []

    def scale(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _TOKENS.finditer(prompt):
        kind = match.lastgroup if match.lastgroup != "number" else "weight"
        if kind == "escaped":
            pieces.append([match["escaped"], 1.0])
        elif kind == "weight" and rounds:
            scale(rounds.pop(), float(match["number"]))
        elif kind == "weight":  # a ":1.2)" with no "(" before it is text
            pieces.append([match.group(), 1.0])
        elif kind == "bracket" and match["bracket"] in "([":
            (rounds if match["bracket"] == "(" else squares).append(len(pieces))
        elif kind == "bracket" and match["bracket"] == ")" and rounds:
            scale(rounds.pop(), UP)
        elif kind == "bracket" and match["bracket"] == "]" and squares:
            scale(squares.pop(), DOWN)
        else:  # text, or a closing bracket with nothing open
            for number, part in enumerate(_BREAK.split(match.group())):
                if number:
                    pieces.append([BREAK, -1.0])
                pieces.append([part, 1.0])
    for start in rounds:
        scale(start, UP)
    for start in squares:
        scale(start, DOWN)
    return _merged(pieces)


def _merged(pieces: list[list]) -> list[tuple[str, float]]:
    merged: list[list] = []
    for text, weight in pieces:
        if not text:
            continue
        if merged and merged[-1][1] == weight and weight != -1.0:
            merged[-1][0] += text
        else:
            merged.append([text, weight])
    return [(text, weight) for text, weight in merged] or [("", 1.0)]


# --- 75-token chunks -----------------------------------------------------------------------

CHUNK_TOKENS = 75  # CLIP reads 77 positions: a start token, 75 tokens and an end token
COMMA_BACKTRACK = 20  # A1111's "comma padding backtrack" default


@dataclass
class TokenChunk:
    """Up to CHUNK_TOKENS tokens of a prompt and their weights, without start, end or padding."""

    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


def split_into_chunks(pieces: Sequence[tuple[list[int], float] | None], comma: int | None,
                      length: int = CHUNK_TOKENS, backtrack: int = COMMA_BACKTRACK) -> list[TokenChunk]:
    """The tokens of a prompt's pieces (None for a BREAK) in chunks, as A1111 splits them: a full
    chunk whose last comma is at most ``backtrack`` tokens back ends after that comma (the rest
    moves on), so a phrase is not cut in two; a BREAK ends the chunk where it is, even an empty one;
    an empty prompt is one empty chunk."""
    chunks: list[TokenChunk] = []
    chunk = TokenChunk()
    last_comma = -1

    def close() -> None:
        nonlocal chunk, last_comma
        chunks.append(chunk)
        chunk, last_comma = TokenChunk(), -1

    for piece in pieces:
        if piece is None:
            close()
            continue
        tokens, weight = piece
        for token in tokens:
            if token == comma:
                last_comma = len(chunk.tokens)
            elif len(chunk.tokens) == length and last_comma != -1 and length - last_comma <= backtrack:
                cut = last_comma + 1
                moved = TokenChunk(chunk.tokens[cut:], chunk.weights[cut:])
                del chunk.tokens[cut:], chunk.weights[cut:]
                close()
                chunk = moved
            if len(chunk.tokens) == length:
                close()
            chunk.tokens.append(token)
            chunk.weights.append(weight)
    if chunk.tokens or not chunks:
        close()
    return chunks


def plain_text(pieces: list[tuple[str, float]]) -> str:
    """The prompt's words without the syntax (and without BREAKs)."""
    return "".join(text for text, weight in pieces if weight != -1.0)


def is_weighted(pieces: list[tuple[str, float]]) -> bool:
    """Whether any piece has a weight other than 1, or the prompt has a BREAK."""
    return any(weight != 1.0 for _, weight in pieces)
