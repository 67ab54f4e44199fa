"""A1111's emphasis syntax: the cases its own parser documents, and the edges around them."""

import pytest

from tui.engine.prompt_weights import parse_emphasis


def rounded(pieces):
    return [(text, round(weight, 4)) for text, weight in pieces]


@pytest.mark.parametrize("prompt,expected", [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.573), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55), (", sun, ", 1.1),
      ("sky", 1.4641), (".", 1.1)]),
], ids=["plain", "round", "unbalanced", "escaped", "merged", "nested"])
def test_the_cases_a1111_documents(prompt, expected):
    assert rounded(parse_emphasis(prompt)) == expected


@pytest.mark.parametrize("prompt,expected", [
    ("[faded]", [("faded", round(1 / 1.1, 4))]),
    ("[[faded]]", [("faded", round(1 / 1.21, 4))]),
    ("(a:1.0) b", [("a b", 1.0)]),  # an explicit 1.0 is the same as no brackets
    ("( spaced : 0.25 )", [(" spaced ", 0.25)]),
    ("stray) and ]", [("stray) and ]", 1.0)]),
    ("time 12:30", [("time 12:30", 1.0)]),
    ("a:1.2) b", [("a:1.2) b", 1.0)]),
    ("", [("", 1.0)]),
], ids=["square", "double-square", "explicit-one", "spaces", "stray-closers", "colon-text", "weight-without-open",
        "empty"])
def test_edges(prompt, expected):
    assert rounded(parse_emphasis(prompt)) == expected


def test_break_ends_a_chunk_and_takes_its_spaces():
    assert parse_emphasis("a castle BREAK (a moat:1.2)") == [("a castle", 1.0), ("BREAK", -1.0), ("a moat", 1.2)]
    assert parse_emphasis("BREAKFAST and break") == [("BREAKFAST and break", 1.0)], "only the word, upper case"
