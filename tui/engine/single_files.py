"""Single files that hold a model's transformer alone (FLUX.1, FLUX.2, Z-Image, Qwen-Image, SD 3.5: the
files their makers and ComfyUI publish, and the GGUF files quantized from them): diffusers converts the
transformer from its original layout, and the pipeline's other parts (text encoders, tokenizers, VAE,
scheduler) and the transformer's config come from a diffusers repository of the same model in the local
Hugging Face cache. A file given by path fetches nothing: a missing repository is an error that says how to
fetch it. A file the user chose from the Hub (owner/name/file.gguf) is given a ``fetch_base``, which downloads
the family's base repository without its transformer weights.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Mapping

from tui.engine.families import Family, ModelFamily
from tui.engine.gguf_header import GGUF_SUFFIX, GGUFError, GGUFHeader, read_gguf_header
from tui.engine.models import (LOADER_ERRORS, LocalModel, Loader, ModelLoadError, _components, _relative_files,
                               check_single_file, choose_variant, complete_variants, first_line,
                               whole_checkpoint_loader)

COMFY_PREFIX = "model.diffusion_model."  # ComfyUI's single files prefix the transformer's tensors
# A file holding the whole pipeline also has its VAE and text encoders, under the original checkpoints' names
# (SD's, SD3's all-in-one files, ComfyUI's checkpoints: first_stage_model, conditioner, text_encoders).
_VAE_PREFIX = "first_stage_model."
_TEXT_ENCODER_PREFIXES = ("cond_stage_model.", "conditioner.", "text_encoders.")
TRANSFORMER = "transformer"
log = logging.getLogger("tui.engine.single_files")


def component_of(tensor: str) -> str:
    """The pipeline component a whole checkpoint's tensor belongs to, by its prefix."""
    if tensor.startswith(_VAE_PREFIX):
        return "vae"
    if tensor.startswith(_TEXT_ENCODER_PREFIXES):
        return "text_encoder"
    return "unet"


def holds_whole_pipeline(keys: Collection[str]) -> bool:
    return (any(key.startswith(_VAE_PREFIX) for key in keys)
            and any(key.startswith(_TEXT_ENCODER_PREFIXES) for key in keys))


def transformer_only(model: ModelFamily, keys: Collection[str]) -> bool:
    """Whether a single file of ``model``'s family is its transformer alone, loaded with a base repository."""
    return model.family.single_file is not None and not holds_whole_pipeline(keys)


def base_repo_id(model: ModelFamily, shapes: Mapping[str, tuple[int, ...]]) -> str:
    single_file = model.family.single_file
    assert single_file is not None
    return single_file.base_repo(shapes, model.turbo)


def parts_besides_transformer(snapshot: Path | None, allow_pickle: bool, prefer_fp16: bool) -> LocalModel | None:
    """``snapshot`` with the weight variant to load its other parts in, when it has the transformer's
    config and every other component whole in one variant; else None."""
    if snapshot is None or not (snapshot / "model_index.json").is_file():
        return None
    if not (snapshot / TRANSFORMER / "config.json").is_file():
        return None
    others = [name for name in _components(snapshot / "model_index.json") if name != TRANSFORMER]
    present = complete_variants(others, _relative_files(snapshot), allow_pickle)
    return LocalModel(snapshot, choose_variant(present, prefer_fp16)) if present else None


def _cached_pipelines_of(entry: Family, cache: Path) -> Iterator[tuple[str, Path]]:
    """Repository ids and snapshots in the cache whose pipeline class is one of ``entry``'s."""
    from tui.engine.download import _repo_id, main_snapshot

    for repo in sorted(cache.glob("models--*")):
        snapshot = main_snapshot(repo)
        if snapshot and _pipeline_class(snapshot / "model_index.json") in entry.recognise.pipeline_classes:
            yield _repo_id(repo), snapshot


def _pipeline_class(index: Path) -> str | None:
    """The pipeline class a model_index.json names, read once per version of the file: the picker looks up a
    base for every transformer-only and GGUF file it lists, each lookup going over the whole cache."""
    try:
        stamp = index.stat().st_mtime_ns
    except OSError:
        return None
    return _read_pipeline_class(str(index), stamp)


@lru_cache(maxsize=512)
def _read_pipeline_class(index: str, _stamp: int) -> str | None:
    try:
        data = json.loads(Path(index).read_text())
    except (OSError, ValueError):
        return None
    name = data.get("_class_name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def find_base(model: ModelFamily, repo_id: str, allow_pickle: bool,
              prefer_fp16: bool) -> tuple[str, LocalModel] | None:
    """The cached repository the file's other parts come from: ``repo_id`` when it is whole but for its
    transformer weights, else another cached one of the family's pipeline classes (a finetune's, or the
    same model saved under another name)."""
    from tui.engine.download import hub_cache_dir, main_snapshot, repo_folder

    cache = hub_cache_dir()
    found = parts_besides_transformer(main_snapshot(repo_folder(cache, repo_id)), allow_pickle, prefer_fp16)
    if found is not None:
        return repo_id, found
    for other, snapshot in _cached_pipelines_of(model.family, cache):
        found = parts_besides_transformer(snapshot, allow_pickle, prefer_fp16) if other != repo_id else None
        if found is not None:
            return other, found
    return None


def missing_base_message(path: Path, model: ModelFamily, repo_id: str) -> str:
    # The transformer's config is needed (its weights are not), so only the weights are excluded.
    return (f"model: {path.name} holds only the {model.family.label} transformer, and its text encoders, VAE and "
            f"scheduler come from {repo_id}, which the local Hugging Face cache does not hold; fetch them once with "
            f"`hf download {repo_id} --exclude 'transformer/*.safetensors'`")


def without_comfy_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """The tensors under their own names: diffusers' Qwen-Image mapping keeps names as they are
    (single_file_model.py), so ComfyUI's prefix would leave every weight unmatched."""
    return {key.removeprefix(COMFY_PREFIX): value for key, value in state.items()}


def transformer_tensors(path: Path, torch_dtype) -> tuple[dict[str, Any], dict[str, Any]]:
    """The file's tensors and the from_single_file arguments they need. A GGUF file's quantized tensors stay
    quantized in memory (diffusers' GGUFLinear dequantizes one layer's weight at a time, in ``torch_dtype``,
    as it computes); its unquantized ones (F32 norms and biases) are cast to ``torch_dtype``."""
    if path.suffix.lower() != GGUF_SUFFIX:
        from safetensors.torch import load_file

        return load_file(str(path)), {}
    from diffusers import GGUFQuantizationConfig
    from diffusers.models.model_loading_utils import load_gguf_checkpoint

    return load_gguf_checkpoint(str(path)), {"quantization_config": GGUFQuantizationConfig(compute_dtype=torch_dtype)}


FetchBase = Callable[[str], object]  # downloads a base repository (by id) without its transformer weights


def transformer_file_loader(path: Path, model: ModelFamily, shapes: Mapping[str, tuple[int, ...]],
                            allow_pickle: bool, prefer_fp16: bool, quantize: str = "none", device: str = "cpu",
                            fetch_base: FetchBase | None = None) -> Loader:
    """Find the base repository's other parts in the cache (downloading them with ``fetch_base`` where given
    and none is cached), raising ModelLoadError before anything is unloaded; the function returned loads the
    file's transformer and the pipeline around it, the parts the ``quantize`` setting names quantized to NF4
    on ``device`` as they load (not a GGUF file's: it is quantized already)."""
    repo_id = base_repo_id(model, shapes)
    found = find_base(model, repo_id, allow_pickle, prefer_fp16)
    if found is None and fetch_base is not None:
        fetch_base(repo_id)
        found = find_base(model, repo_id, allow_pickle, prefer_fp16)
    if found is None:
        raise ModelLoadError(missing_base_message(path, model, repo_id))
    base_id, base = found
    single_file = model.family.single_file
    assert single_file is not None

    def load(torch_dtype):
        import diffusers
        from diffusers import AutoPipelineForText2Image

        from tui.engine.nf4 import model_quantization, pipeline_quantization, quantizes

        others = [name for name in _components(base.folder / "model_index.json") if name != TRANSFORMER]
        try:
            tensors, quantization = transformer_tensors(path, torch_dtype)
            if not quantization and quantizes(quantize, TRANSFORMER):
                quantization = model_quantization(torch_dtype, device)
            transformer = getattr(diffusers, single_file.transformer).from_single_file(
                without_comfy_prefix(tensors), config=str(base.folder), subfolder=TRANSFORMER,
                torch_dtype=torch_dtype, local_files_only=True, **quantization)
            return AutoPipelineForText2Image.from_pretrained(
                str(base.folder), transformer=transformer, torch_dtype=torch_dtype, variant=base.variant,
                use_safetensors=not allow_pickle or None, local_files_only=True,
                **pipeline_quantization(quantize, others, torch_dtype))
        except LOADER_ERRORS as error:
            raise ModelLoadError(f"model: loading {path.name} with the other parts of {base_id} failed: "
                                 f"{first_line(error)}") from None

    return Loader(load, base, not allow_pickle or None)


def gguf_family(header: GGUFHeader, name: str) -> ModelFamily | None:
    """The family of a GGUF file's transformer, told by its tensor names as a .safetensors file's is (ComfyUI-GGUF
    keeps the original names); its architecture field alone cannot tell FLUX.1 from FLUX.2 (both "flux"), nor
    Z-Image from Lumina 2 (both "lumina2"). None for a file sdtui cannot load: a UNet's (SD, SDXL), a text
    encoder's, an unknown transformer's."""
    from tui.engine.families import family_from_checkpoint

    keys = header.shapes.keys()
    model = family_from_checkpoint(keys, name)
    return model if model is not None and transformer_only(model, keys) else None


def not_loadable_message(name: str, architecture: str) -> str:
    from tui.engine.families import FAMILIES

    labels = ", ".join(dict.fromkeys(f.label for f in FAMILIES if f.single_file is not None))
    said = f" (its architecture says {architecture!r})" if architecture else ""
    return (f"model: {name} is a GGUF file{said} but not a transformer sdtui can load; GGUF files of the "
            f"transformers of {labels} load")


def check_gguf_file(path: Path) -> tuple[GGUFHeader, ModelFamily]:
    """The GGUF file's header and family, raising ModelLoadError (one sentence) for one that cannot load."""
    try:
        header = read_gguf_header(path)
    except GGUFError as error:
        raise ModelLoadError(str(error)) from None
    model = gguf_family(header, path.name)
    if model is None:
        raise ModelLoadError(not_loadable_message(path.name, header.architecture))
    return header, model


def single_file_loader(path: Path, allow_pickle: bool, prefer_fp16: bool = False, quantize: str = "none",
                       device: str = "cpu", fetch_base: FetchBase | None = None) -> Loader:
    """Check a .safetensors (or, when allowed, .ckpt) checkpoint, raising ModelLoadError before
    anything is unloaded; the function returned loads it at a torch dtype. A file holding a
    transformer alone (FLUX.1, Z-Image, Qwen-Image...) loads with its family's base repository, which
    ``fetch_base`` downloads where given and the cache holds none; ``prefer_fp16`` picks that repository's
    fp16 weights where it has them. A whole checkpoint
    loads through diffusers' single-file loader (models.whole_checkpoint_loader). A .gguf file holds a
    quantized transformer, which loads as a .safetensors one does and stays quantized. ``quantize`` applies
    to a transformer-only .safetensors file alone (on ``device``)."""
    from tui.engine.families import family_from_checkpoint

    if path.suffix.lower() == GGUF_SUFFIX:
        gguf, model = check_gguf_file(path)
        _not_quantized(quantize, path, "a GGUF file, whose transformer is quantized already")
        return transformer_file_loader(path, model, gguf.shapes, allow_pickle, prefer_fp16, fetch_base=fetch_base)
    header = check_single_file(path, allow_pickle)
    model = family_from_checkpoint(header.shapes.keys(), path.name) if header is not None else None
    if model is not None and transformer_only(model, header.shapes.keys()):
        return transformer_file_loader(path, model, header.shapes, allow_pickle, prefer_fp16, quantize, device,
                                       fetch_base)
    _not_quantized(quantize, path, "a whole checkpoint, which diffusers' single-file loader cannot quantize")
    return whole_checkpoint_loader(path, header, allow_pickle)


def _not_quantized(quantize: str, path: Path, why: str) -> None:
    if quantize != "none":
        log.info("quantize: %s does not apply to %s, %s", quantize, path.name, why)
