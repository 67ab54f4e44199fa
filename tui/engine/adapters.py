"""LoRAs and textual-inversion embeddings applied to the loaded pipeline, per job.

LoRAs are loaded once as named PEFT adapters (diffusers' ``load_lora_weights``) and switched with
``set_adapters``, so changing LoRAs or their weights between jobs never reloads the model, and a
job without LoRAs runs with them switched off (the same pixels as before any was loaded). The
least recently used are deleted past MAX_LOADED_LORAS. Embeddings are loaded when a prompt first
names one and stay for the life of the model.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from tui.engine.families import CLIP, FAMILIES, Family, family_labels
from tui.engine.models import first_line
from tui.engine.networks import (EMBEDDINGS, LORAS, LoraUse, NetworkError, NetworkFile, extract_loras, find_network,
                                 lora_label, network_files, short_hash)

log = logging.getLogger("tui.engine")
MAX_LOADED_LORAS = 8
# The model parts A1111's second weight is for: the UNet, or the transformer that takes its place.
_DENOISERS = ("unet", "transformer")
_LORA_LABELS = {lora_label(f) for f in FAMILIES if f.lora}


@dataclass
class PreparedPrompts:
    """The prompts to encode (LoRA tags removed) and what the job used, for the image's metadata."""

    prompt: str
    negative: str
    lora_hashes: dict[str, str] = field(default_factory=dict)
    ti_hashes: dict[str, str] = field(default_factory=dict)
    made_for_steps: dict[str, int] = field(default_factory=dict)  # LoRAs that name their step count

    def metadata(self) -> dict[str, dict[str, str]]:
        return {key: value for key, value in (("lora_hashes", self.lora_hashes), ("ti_hashes", self.ti_hashes))
                if value}


def _weights(adapter: str, use: LoraUse, parts: dict[str, list[str]]) -> float | dict[str, float]:
    """One weight for the whole LoRA, or one per part it has (diffusers warns of a part it lacks):
    the UNet's (or transformer's), and the text encoders' for both of SDXL's."""
    if use.unet is None:
        return use.weight
    return {part: use.unet_weight if part in _DENOISERS else use.weight
            for part, adapters in parts.items() if adapter in adapters}


class Networks:
    """The LoRAs and embeddings loaded into one pipeline; ``reset()`` when the pipeline goes."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._adapters: dict[tuple[str, int], str] = {}  # (path, mtime) -> adapter name, oldest use first
        self._embeddings: dict[str, tuple[str, int]] = {}  # token -> (path, mtime)
        self._active: tuple = ()
        self._in_encoders: tuple = ()  # the active LoRAs whose layers include a text encoder's
        self._enabled = True
        self._serial = 0

    @property
    def encoder_state(self) -> tuple:
        """What of the LoRAs and embeddings reaches the text encoders: prompt embeddings made
        under one state are not the embeddings of another."""
        return self._in_encoders, tuple(sorted(self._embeddings.items()))

    def in_text_encoders(self, pipe) -> bool:
        """Whether a LoRA or an embedding is loaded into one of the text encoders (switched on or not)."""
        return bool(self._embeddings) or (bool(self._adapters) and any(
            part not in _DENOISERS for part in pipe.get_list_adapters()))

    def prepare(self, pipe, family: Family, models_dir: str, prompt: str, negative: str,
                allow_pickle: bool, before_loading: Callable[[], None] = lambda: None) -> PreparedPrompts:
        """Make ``pipe`` use the LoRAs ``prompt`` names (and none other) and the embeddings either
        prompt names. Raises NetworkError, in one sentence, for a file that is missing, of another
        family, or unreadable. ``before_loading`` runs before a file is loaded into the pipeline
        (which may need its text encoders)."""
        wanted = extract_loras(prompt)
        unwanted = extract_loras(negative)
        for sentence in wanted.ignored:
            log.warning("%s", sentence)
        if unwanted.loras:
            log.warning("LoRA tags in the negative prompt are ignored, as in A1111: %s",
                        ", ".join(use.name for use in unwanted.loras))
        prepared = PreparedPrompts(wanted.text, unwanted.text)
        folder = Path(models_dir).expanduser() if models_dir else None
        uses, described = [], []
        if wanted.loras:
            files = network_files(folder / LORAS, LORAS, allow_pickle) if folder else []
            for use in wanted.loras:
                found = find_network(files, use.name, LORAS)
                _check_usable(found, pipe, family)
                uses.append((self._adapter(pipe, found, before_loading), use))
                described.append(replace(use, name=found.name).described)
                prepared.lora_hashes[found.name] = short_hash(found.path, skip_header=True)
                if found.steps:
                    prepared.made_for_steps[found.name] = found.steps
        self._activate(pipe, uses, described)
        if folder and (folder / EMBEDDINGS).is_dir():
            for found in _named_embeddings(folder / EMBEDDINGS, allow_pickle, prepared.prompt, prepared.negative):
                self._embedding(pipe, family, found, before_loading)
                prepared.ti_hashes[found.name] = short_hash(found.path, skip_header=False)
        return prepared

    def _adapter(self, pipe, found: NetworkFile, before_loading: Callable[[], None]) -> str:
        key = (str(found.path), found.path.stat().st_mtime_ns)
        if key in self._adapters:
            self._adapters[key] = self._adapters.pop(key)  # now the most recently used
            return self._adapters[key]
        if any(part not in _DENOISERS for part in getattr(pipe, "_lora_loadable_modules", ())):
            before_loading()  # a LoRA's text encoder layers go into the encoders (SD's, FLUX.1's)
        self._serial += 1
        name = f"lora{self._serial}"  # adapter names must be identifiers; file names need not be
        started = time.perf_counter()
        try:
            with warnings.catch_warnings():  # peft's note that a model holds several adapters is the point here
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                pipe.load_lora_weights(str(found.path), adapter_name=name)
        except Exception as error:
            _drop_partial(pipe, name)
            raise NetworkError(_load_failure(found, error)) from None
        self._adapters[key] = name
        log.info("LoRA %s (%s) loaded in %.2f s", found.name, found.label, time.perf_counter() - started)
        return name

    def _activate(self, pipe, uses: list[tuple[str, float]], described: list[str]) -> None:
        active = tuple(uses)
        if active == self._active:
            return
        self._in_encoders = ()
        if not uses:
            if self._adapters and self._enabled:
                pipe.disable_lora()
                self._enabled = False
            log.info("LoRAs off")
        else:
            if not self._enabled:
                pipe.enable_lora()
                self._enabled = True
            parts = pipe.get_list_adapters()  # {"unet": [adapter, ...], "text_encoder": [...], ...}
            pipe.set_adapters([name for name, _ in uses], [_weights(name, use, parts) for name, use in uses])
            encoders = [adapters for part, adapters in parts.items() if part not in _DENOISERS]
            self._in_encoders = tuple((name, use) for name, use in uses if any(name in a for a in encoders))
            log.info("LoRAs: %s", ", ".join(described))
        self._active = active
        self._evict(pipe, {name for name, _ in uses})

    def _evict(self, pipe, in_use: set[str]) -> None:
        for key in [k for k, name in self._adapters.items() if name not in in_use]:
            if len(self._adapters) <= MAX_LOADED_LORAS:
                break
            pipe.delete_adapters([self._adapters.pop(key)])

    def _embedding(self, pipe, family: Family, found: NetworkFile, before_loading: Callable[[], None]) -> None:
        key = (str(found.path), found.path.stat().st_mtime_ns)
        if self._embeddings.get(found.name) == key:
            return
        before_loading()
        if found.name in self._embeddings:  # the file changed: its tokens are replaced
            _unload_embedding(pipe, family, found.name)
        if found.problem:
            raise NetworkError(f"embedding: {found.problem}")
        vectors = _read_vectors(found.path)
        encoders = [e for e in family.encoders if e.kind == CLIP]
        if len(encoders) > 1:  # one set of vectors per text encoder, by name (SDXL's clip_l and clip_g)
            names = [e.embedding_key for e in encoders]
            if any(name not in vectors for name in names):
                raise NetworkError(f"embedding: {found.name} is not an {family.label} embedding (it has no "
                                   f"{' and '.join(names)} vectors); the loaded model is {family.label}")
            pairs = [(vectors[e.embedding_key], getattr(pipe, e.component), getattr(pipe, e.tokenizer))
                     for e in encoders]
        elif len(encoders) == 1:
            if len(vectors) != 1:
                raise NetworkError(f"embedding: {found.name} is made for {_made_for(found)}; "
                                   f"the loaded model is {family.label}")
            pairs = [(next(iter(vectors.values())), getattr(pipe, encoders[0].component),
                      getattr(pipe, encoders[0].tokenizer))]
        else:
            raise NetworkError(f"embedding: {found.name} cannot be used; {family.label} models have no CLIP text "
                               "encoder to load embeddings into")
        for tensor, encoder, tokenizer in pairs:
            width = encoder.config.hidden_size
            if tensor.shape[-1] != width:
                raise NetworkError(f"embedding: {found.name} is made for {_made_for(found)} "
                                   f"(width {tensor.shape[-1]}); the loaded model is {family.label} (width {width})")
        for tensor, encoder, tokenizer in pairs:
            pipe.load_textual_inversion(tensor.reshape(-1, tensor.shape[-1]), token=found.name,
                                        text_encoder=encoder, tokenizer=tokenizer)
        self._embeddings[found.name] = key
        vectors_count = pairs[0][0].numel() // pairs[0][0].shape[-1]
        log.info("embedding %s (%s, %d vector%s) loaded", found.name, found.label, vectors_count,
                 "" if vectors_count == 1 else "s")


def _made_for(found: NetworkFile) -> str:
    return found.family if found.family in family_labels().values() or found.family in _LORA_LABELS \
        else "another model"


def _check_usable(found: NetworkFile, pipe, family: Family) -> None:
    """A LoRA of another family is refused: a UNet's by its cross-attention width where the model has a
    UNet, else any of a known family by that family."""
    if found.problem:
        raise NetworkError(f"LoRA: {found.problem}")
    if family.lora is None:
        raise NetworkError(f"LoRA: {found.name} cannot be used; sdtui loads no LoRAs into {family.label} models")
    unet = getattr(pipe, "unet", None)
    context = getattr(getattr(unet, "config", None), "cross_attention_dim", None)
    if found.width is not None and context is not None:
        if found.width != context:
            raise NetworkError(f"LoRA: {found.name} is made for {_made_for(found)} (cross-attention width "
                               f"{found.width}); the loaded model is {family.label} (width {context})")
        return
    if found.family in _LORA_LABELS and found.family != lora_label(family):
        raise NetworkError(f"LoRA: {found.name} is made for {found.family}; the loaded model is {family.label}")


def _load_failure(found: NetworkFile, error: Exception) -> str:
    """The sentence for a LoRA diffusers could not load. peft's NoMatchingPeftModuleError lists every layer
    of the file; that none is in the model is what it says."""
    if type(error).__name__ == "NoMatchingPeftModuleError":
        return f"LoRA: {found.name} could not be loaded: the loaded model has none of its layers"
    return f"LoRA: {found.name} could not be loaded ({type(error).__name__}: {first_line(error, 'no message')})"


def _drop_partial(pipe, name: str) -> None:
    """A load that failed half way may have left the adapter on some components."""
    try:
        if any(name in names for names in (pipe.get_list_adapters() or {}).values()):
            pipe.delete_adapters([name])
    except Exception:  # cleaning up after a failure is best effort
        log.debug("could not remove the adapter %s", name, exc_info=True)


def _named_embeddings(folder: Path, allow_pickle: bool, *texts: str) -> list[NetworkFile]:
    """The embeddings whose names appear as words in ``texts`` (case-insensitive, as CLIP reads them)."""
    named = []
    for found in network_files(folder, EMBEDDINGS, allow_pickle):
        word = re.compile(rf"(?<![\w-]){re.escape(found.name)}(?![\w-])", re.IGNORECASE)
        if any(word.search(text) for text in texts):
            named.append(found)
    return named


def _read_vectors(path: Path) -> dict:
    """An embedding file's tensors by name: A1111's ``emb_params``, SDXL's ``clip_l`` and ``clip_g``,
    or diffusers' single token; from a pickle, A1111's ``string_to_param`` (allowed by the caller)."""
    if path.suffix.casefold() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    data = torch.load(str(path), map_location="cpu", weights_only=False)
    if isinstance(data, dict) and "string_to_param" in data:
        return {"emb_params": next(iter(data["string_to_param"].values()))}
    return data if isinstance(data, dict) else {}


def _unload_embedding(pipe, family: Family, token: str) -> None:
    pipe.unload_textual_inversion(token)
    for encoder in [e for e in family.encoders if e.kind == CLIP][1:]:
        pipe.unload_textual_inversion(token, text_encoder=getattr(pipe, encoder.component),
                                      tokenizer=getattr(pipe, encoder.tokenizer))
