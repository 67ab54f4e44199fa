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
