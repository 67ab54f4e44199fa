"""Prompt embeddings kept between jobs, so re-rolling seeds never runs the text encoders again.

A pipeline's ``encode_prompt`` is wrapped with a memo keyed by its arguments (the prompt, the
negative prompt, whether guidance encodes the negative, max_sequence_length, clip skip, images per
prompt, the device...). The loaded model, its dtype and the LoRAs and embeddings in its text
encoders are not among them: the engine clears the cache when any of those change.

Pipelines whose ``encode_prompt`` is the same code share entries: diffusers copies it verbatim
across a family's text-to-image, image-to-image and Kontext pipelines, so a hires fix's second
pass reuses its first pass's embeddings. A tensor among the arguments (embeddings sdtui weighted
itself) is keyed by identity and version, so it matches only itself, unchanged; a picture (the
one Qwen-Image-Edit encodes with the prompt) by its pixels. Anything else unhashable makes the
call uncached.
"""

from __future__ import annotations

import dis
import hashlib
import inspect
import types
from collections import OrderedDict
from typing import Any, Callable

# Entries, not prompts: a job makes one to three (the prompt, the negative prompt where the pipeline
# encodes it on its own, sdtui's weighted embeddings). Embeddings are a few MB at most.
MAX_ENTRIES = 12


class Uncacheable(Exception):
    """An argument that cannot be part of a key."""


class _Same:
    """An object compared by identity; holding it keeps its id from being reused while it is a key."""

    __slots__ = ("value",)

    def __init__(self, value) -> None:
        self.value = value

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other) -> bool:
        return isinstance(other, _Same) and other.value is self.value


def key_part(value) -> Any:
    """``value`` as a hashable key; raises Uncacheable where it cannot safely be one."""
    if value is None or isinstance(value, (str, int, float, bool, bytes)):
        return value
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(key_part(item) for item in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), key_part(v)) for k, v in value.items())))
    import torch

    if isinstance(value, torch.Tensor):
        return ("tensor", _Same(value), value._version)
    from PIL import Image

    if isinstance(value, Image.Image):
        digest = hashlib.blake2b(value.tobytes(), digest_size=16).hexdigest()
        return ("image", value.mode, value.size, digest)
    try:
        hash(value)
    except TypeError:
        raise Uncacheable(type(value).__name__) from None
    return value


def call_key(signature: inspect.Signature, args: tuple, kwargs: dict) -> tuple | None:
    """The call's arguments by name, defaults filled in, as a key; None when one cannot be part of it."""
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    try:
        return tuple((name, key_part(value)) for name, value in bound.arguments.items())
    except Uncacheable:
        return None


def _code_shape(code: types.CodeType) -> tuple:
    """What a function does, without where it is written (file and line numbers)."""
    consts = tuple(_code_shape(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.co_code, code.co_names, code.co_varnames, consts


def _called_on_self(code: types.CodeType, self_name: str = "self") -> set[str]:
    """The attributes ``code`` (and the functions written inside it) reads from ``self``."""
    names, previous = set(), None
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("LOAD_ATTR", "LOAD_METHOD") and previous is not None \
                and previous.opname.startswith(("LOAD_FAST", "LOAD_DEREF")) and self_name in (
                    previous.argval, *(previous.argval[-1:] if isinstance(previous.argval, tuple) else ())):
            names.add(instruction.argval)  # (3.13 loads two locals in one instruction: self may be the second)
        previous = instruction
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _called_on_self(const, self_name)
    return names


_ENCODING_CODE: dict[tuple[type, str], tuple] = {}


def encoding_code(cls: type, method: str = "encode_prompt") -> tuple:
    """The code of ``cls.method`` and of every method of ``cls`` it calls, transitively: two
    pipeline classes with the same encode the same arguments to the same embeddings."""
    if (cls, method) in _ENCODING_CODE:
        return _ENCODING_CODE[cls, method]
    shapes: dict[str, tuple] = {}
    todo = [method]
    while todo:
        name = todo.pop()
        found = inspect.getattr_static(cls, name, None)
        code = getattr(getattr(found, "__func__", found), "__code__", None)  # a staticmethod's function
        if name in shapes or code is None:
            continue
        shapes[name] = _code_shape(code)
        todo.extend(_called_on_self(code))
    _ENCODING_CODE[cls, method] = code_of = tuple(sorted(shapes.items()))
    return code_of


def _copied(value):
    """A copy that the pipeline may change in place without changing the entry."""
    if isinstance(value, tuple):
        return tuple(_copied(item) for item in value)
    if isinstance(value, list):
        return [_copied(item) for item in value]
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    clone = getattr(value, "clone", None)
    return clone() if callable(clone) else value


class PromptCache:
    """The least recently used prompt embeddings of the loaded model, at most MAX_ENTRIES, and
    what the current job found in it."""

    def __init__(self, size: int = MAX_ENTRIES) -> None:
        self.size = size
        self._entries: OrderedDict[tuple, Any] = OrderedDict()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def begin_job(self) -> None:
        self.hits = self.misses = 0

    @property
    def all_reused(self) -> bool:
        """Whether every prompt encoding of the job so far came from the cache."""
        return self.hits > 0 and self.misses == 0

    def get(self, key: tuple | None, compute: Callable[[], Any], copy: bool = True):
        """The entry for ``key``, else ``compute()`` kept under it (never kept for a None key).
        ``copy``: hand out copies of its tensors, for callers that may change them in place."""
        if key is not None and key in self._entries:
            self._entries.move_to_end(key)
            self.hits += 1
            value = self._entries[key]
        else:
            self.misses += 1
            value = compute()
            if key is not None:
                self._entries[key] = value
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return _copied(value) if copy else value


def memoise_encode_prompt(pipe, cache: PromptCache, before_encoding: Callable[[], None] = lambda: None) -> None:
    """Make ``pipe.encode_prompt`` (what the pipeline's ``__call__`` calls) answer from ``cache``;
    ``before_encoding`` runs before the text encoders are needed (to bring them back)."""
    original = pipe.encode_prompt
    signature = inspect.signature(original)
    code = encoding_code(type(pipe))

    def run(*args, **kwargs):
        before_encoding()
        return original(*args, **kwargs)

    def encode_prompt(*args, **kwargs):
        key = call_key(signature, args, kwargs)
        return cache.get(None if key is None else ("encode_prompt", code, key), lambda: run(*args, **kwargs))

    pipe.encode_prompt = encode_prompt
