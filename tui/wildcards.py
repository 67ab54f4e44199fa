"""Wildcards and alternatives: ``{red|blue} fox`` and ``__colors__`` (a line of
``wildcards/colors.txt``) expand into every combination, one job each, with the
``dynamicprompts`` library (the engine of A1111's and ComfyUI's Dynamic Prompts extensions).

A prompt with neither ``{`` nor ``__`` is one prompt, unchanged, and never reaches the library.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

MAX_PROMPTS = 100  # as many as one job's images: a typo such as {a|b|...} x 5 should not queue thousands
_WILDCARD = re.compile(r"__([^_\s{}|]+(?:_[^_\s{}|]+)*)__")


class WildcardError(ValueError):
    """A template that cannot expand; the message is one sentence naming the prompt."""


def has_template(prompt: str) -> bool:
    return "{" in prompt or bool(_WILDCARD.search(prompt))


def wildcard_names(folder: Path) -> list[str]:
    """The wildcards in ``folder``: each .txt file's path without the suffix (``colors``, ``styles/ink``)."""
    if not folder.is_dir():
        return []
    return sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.txt"))


def expand(template: str, folder: Path) -> list[str]:
    """Every prompt ``template`` stands for, in order, without repeats (one when it has no syntax)."""
    if not has_template(template):
        return [template]
    with warnings.catch_warnings():  # the library's own deprecation notices are not the user's business
        warnings.simplefilter("ignore")
        return _expand(template, folder)


def _expand(template: str, folder: Path) -> list[str]:
    from dynamicprompts.generators import CombinatorialPromptGenerator
    from dynamicprompts.wildcards.wildcard_manager import WildcardManager
    from pyparsing import ParseException

    manager = WildcardManager(folder)
    for name in _WILDCARD.findall(template):
        if not len(manager.get_values(name)):
            known = wildcard_names(folder)  # walked only to say what is there
            there = f"there: {', '.join(known[:8])}{', ...' if len(known) > 8 else ''}" if known else "it is empty"
            raise WildcardError(f"prompt: __{name}__ has no file {name}.txt with lines in {folder} ({there})")
    try:
        prompts = [str(p) for p in CombinatorialPromptGenerator(manager).generate(template,
                                                                                 max_prompts=MAX_PROMPTS + 1)]
    except ParseException as error:
        raise WildcardError(f"prompt: cannot read the alternatives at character {error.loc + 1} ({error.msg}); "
                            "write {red|blue} for alternatives") from None
    unique = list(dict.fromkeys(prompts))
    if len(unique) > MAX_PROMPTS:
        raise WildcardError(f"prompt: expands to more than {MAX_PROMPTS} prompts; use fewer alternatives")
    return unique or [template]


def expanded_requests(request, folder: Path) -> list:
    """One request per prompt ``request.prompt`` expands to, each remembering the template."""
    from dataclasses import replace

    prompts = expand(request.prompt, folder)
    if prompts == [request.prompt]:
        return [request]
    return [replace(request, prompt=prompt, template=request.prompt) for prompt in prompts]
