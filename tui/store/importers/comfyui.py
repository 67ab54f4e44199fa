"""ComfyUI's ``prompt`` chunk: the API-format node graph it ran (or its ``workflow`` chunk, turned
into one by comfyui_workflow, when that is all the image holds).

The settings come from the sampler that feeds the saved image, found by walking back from the
SaveImage node; the prompts from every text encoder behind that sampler's positive and negative
inputs, through whatever nodes sit in between (areas, ControlNet, unCLIP, combines, reference
latents, FluxGuidance). A ConditioningZeroOut on the way means no text at all: it zeroes what the
encoder gave. FLUX.1 dev, Kontext and FLUX.2 take their guidance from FluxGuidance (sdtui's
"Distilled CFG"); other models from the sampler's or CFGGuider's cfg.
"""

from __future__ import annotations

import json
import re
from collections import deque
from typing import Any, Callable, Iterator

from tui.engine.request import SIZE_MAX, SIZE_MIN
from tui.engine.schedulers import scheduler_from_comfyui
from tui.store.images import MetadataError
from tui.store.importers.comfyui_workflow import workflow_to_prompt
from tui.store.importers.draft import Draft, Imported

Graph = dict[str, dict[str, Any]]
_TEXT_KEYS = ("text", "text_g", "text_l", "prompt", "string", "value")
_ENCODER_KEYS = ("text", "text_g", "text_l", "prompt", "clip_l", "t5xxl")  # CLIPTextEncodeFlux: clip_l, t5xxl
_WALK_LIMIT = 10_000  # nodes visited per walk; a graph is finite, this only bounds a malformed one
# Inputs that lead away from the prompt: pictures, models, masks. Conditioning never comes through them.
_NOT_CONDITIONING = {"clip", "image", "images", "pixels", "samples", "vae", "model", "control_net",
                     "clip_vision", "clip_vision_output", "mask", "latent_image", "style_model"}
_LATENT_PATH = {"samples", "latent_image", "latent", "pixels", "image", "images"}
_ZEROED = "ConditioningZeroOut"
# What says a graph runs a flow-matching model: its model-sampling nodes, latents, schedulers and
# guidance, or the model file's name (an all-in-one checkpoint carries no other sign).
_FLOW_NODES = {"ModelSamplingFlux", "ModelSamplingAuraFlow", "ModelSamplingSD3", "FluxGuidance",
               "Flux2Scheduler", "EmptySD3LatentImage", "EmptyFlux2LatentImage", "CLIPTextEncodeFlux",
               "TextEncodeQwenImageEdit", "TextEncodeQwenImageEditPlus", "FluxKontextImageScale"}
_FLOW_CLIP_TYPES = {"flux", "flux2", "sd3", "qwen_image", "lumina2", "chroma", "hidream", "hunyuan_image"}
_FLOW_NAMES = re.compile(r"flux|sd3|qwen|z[_-]?image|chroma|lumina|hidream|auraflow|kontext", re.IGNORECASE)
# Nodes that condition on a picture (Kontext's and Qwen-Image-Edit's reference, FLUX's canny, depth and
# fill models): sdtui runs text-to-image, so the import names them when a picture is linked in.
_IMAGE_CONDITIONING = {"ReferenceLatent", "InstructPixToPixConditioning", "InpaintModelConditioning", "FluxKontext",
                       "TextEncodeQwenImageEdit", "TextEncodeQwenImageEditPlus"}
_IMAGE_INPUTS = ("latent", "pixels", "image", "image1", "image2", "image3")
_SHIFT_NODES = {"ModelSamplingFlux": ("max_shift", "base_shift"), "ModelSamplingAuraFlow": ("shift",),
                "ModelSamplingSD3": ("shift",)}


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)) \
        and isinstance(value[1], int)


def _inputs(node: dict[str, Any]) -> dict[str, Any]:
    inputs = node.get("inputs")
    return inputs if isinstance(inputs, dict) else {}


def _node(graph: Graph, link: Any) -> tuple[str, dict[str, Any]] | None:
    if not _is_link(link):
        return None
    node = graph.get(str(link[0]))
    return (str(link[0]), node) if isinstance(node, dict) else None


def _is_sampler(node: dict[str, Any]) -> bool:
    inputs = _inputs(node)
    if "positive" in inputs and ("seed" in inputs or "noise_seed" in inputs or "steps" in inputs):
        return True  # KSampler, KSamplerAdvanced, SamplerCustom
    return ("guider" in inputs and "sampler" in inputs) or ("sampler" in inputs and "sigmas" in inputs)


def _upstream(graph: Graph, start: Any, follow: Callable[[str, dict, int], bool] = lambda *_: True,
              stop: Callable[[dict], bool] = lambda node: False) -> Iterator[tuple[str, dict]]:
    """Nodes behind the link ``start``, nearest first, through the inputs ``follow(key, node,
    output)`` accepts (``output``: which of the node's outputs the walk came in by); a node
    ``stop`` accepts is yielded but not gone behind."""
    seen: set[str] = set()
    queue = deque([start])
    while queue and len(seen) < _WALK_LIMIT:
        link = queue.popleft()
        found = _node(graph, link)
        if found is None or found[0] in seen:
            continue
        seen.add(found[0])
        yield found
        if stop(found[1]):
            continue
        for key, value in _inputs(found[1]).items():
            if _is_link(value) and follow(key, found[1], link[1]):
                queue.append(value)


def _conditioning_input(key: str, node: dict, output: int) -> bool:
    """Inputs a prompt can come through. A node with both a positive and a negative input
    (ControlNetApplyAdvanced, InpaintModelConditioning) gives them out as outputs 0 and 1."""
    if key in _NOT_CONDITIONING:
        return False
    inputs = _inputs(node)
    if "positive" in inputs and "negative" in inputs and key in ("positive", "negative"):
        return key == ("positive", "negative")[min(output, 1)]
    return True


def _nearest_sampler(graph: Graph, link: Any) -> tuple[str, dict] | None:
    return next(((i, n) for i, n in _upstream(graph, link, stop=_is_sampler) if _is_sampler(n)), None)


def _text_value(graph: Graph, value: Any) -> str | None:
    """A text input, itself or from the string node a link points at."""
    if isinstance(value, str):
        return value
    for _, node in _upstream(graph, value):
        for key in _TEXT_KEYS:
            if isinstance(_inputs(node).get(key), str):
                return _inputs(node)[key]
    return None


def _zeroed(node: dict) -> bool:
    return node.get("class_type") == _ZEROED


def _texts(graph: Graph, link: Any) -> list[str]:
    """The texts of every text encoder behind a conditioning link, without repeats; none behind a
    ConditioningZeroOut, which sends zeros whatever its encoder read."""
    texts: list[str] = []
    for _, node in _upstream(graph, link, _conditioning_input, lambda n: _is_sampler(n) or _zeroed(n)):
        inputs = _inputs(node)
        if ("clip" not in inputs and "TextEncode" not in str(node.get("class_type", ""))) or _is_sampler(node):
            continue
        for key in _ENCODER_KEYS:
            text = _text_value(graph, inputs[key]) if key in inputs else None
            if text is not None and text.strip() and text.strip() not in texts:
                texts.append(text.strip())
    return texts


class _Sampler:
    """A sampler node's settings, wherever its kind keeps them (KSampler, KSamplerAdvanced,
    SamplerCustom, or SamplerCustomAdvanced with its guider, noise, sampler and sigmas nodes)."""

    def __init__(self, graph: Graph, node: dict[str, Any]):
        self.graph = graph
        self.inputs = dict(_inputs(node))
        for key in ("guider", "noise", "sampler", "sigmas"):
            helper = _node(graph, self.inputs.get(key))
            if helper:
                for name, value in _inputs(helper[1]).items():
                    self.inputs.setdefault(name, value)

    def get(self, key: str) -> Any:
        value = self.inputs.get(key)
        return None if _is_link(value) else value

    @property
    def conditioning(self) -> tuple[Any, Any]:
        return self.inputs.get("positive", self.inputs.get("conditioning")), self.inputs.get("negative")

    @property
    def seed(self) -> Any:
        if self.get("add_noise") in ("disable", False):
            return None
        return self.get("seed") if self.get("seed") is not None else self.get("noise_seed")

    @property
    def denoise(self) -> float:
        value = self.get("denoise")
        return float(value) if isinstance(value, (int, float)) else 1.0

    def latent(self, depth: int = 0) -> tuple[int | None, int | None, tuple[str, dict] | None]:
        """(width, height) of the latent it starts from, and the sampler of an earlier pass if any."""
        scale = 1.0
        for node_id, node in _upstream(self.graph, self.inputs.get("latent_image"), lambda key, *_: key in _LATENT_PATH,
                                       _is_sampler):
            inputs = _inputs(node)
            if _is_sampler(node):
                width, height, _ = _Sampler(self.graph, node).latent(depth + 1) if depth < 50 else (None, None, None)
                return _scaled(width, scale), _scaled(height, scale), (node_id, node)
            if isinstance(inputs.get("width"), int) and isinstance(inputs.get("height"), int):
                return _scaled(inputs["width"], scale), _scaled(inputs["height"], scale), \
                    _nearest_sampler(self.graph, [node_id, 0])
            if isinstance(inputs.get("scale_by"), (int, float)):
                scale *= inputs["scale_by"]
        return None, None, None


def _scaled(size: int | None, scale: float) -> int | None:
    return None if size is None else int(round(size * scale / 8)) * 8


def _outputs(graph: Graph) -> list[tuple[str, dict]]:
    saves = [(i, n) for i, n in graph.items() if isinstance(n, dict) and "images" in _inputs(n)
             and "Save" in str(n.get("class_type", ""))]
    return saves or [(i, n) for i, n in graph.items() if isinstance(n, dict) and "images" in _inputs(n)]


def _passes(graph: Graph, sampler: tuple[str, dict]) -> int:
    count, current = 1, sampler
    while count < 100:
        earlier = _Sampler(graph, current[1]).latent()[2]
        if earlier is None:
            return count
        count, current = count + 1, earlier
    return count


def _final_sampler(graph: Graph, image_size: tuple[int, int] | None) -> tuple[str, dict] | None:
    """The sampler behind the saved image. With several outputs, the one whose size matches the
    file, else the one with the most passes behind it (the finished picture, not a first pass)."""
    candidates = []
    for _, output in _outputs(graph):
        found = _nearest_sampler(graph, _inputs(output).get("images"))
        if found and found not in candidates:
            candidates.append(found)
    if not candidates:
        candidates = [(i, n) for i, n in graph.items() if isinstance(n, dict) and _is_sampler(n)][:1]
    if not candidates:
        return None
    if image_size:
        matching = [c for c in candidates if _Sampler(graph, c[1]).latent()[:2] == image_size]
        if len(matching) == 1:
            return matching[0]
    return max(candidates, key=lambda c: _passes(graph, c))


def _class(node: dict) -> str:
    return str(node.get("class_type", ""))


def _model_nodes(graph: Graph, sampler: _Sampler) -> list[dict]:
    """The nodes behind the sampler's model (loaders, LoRAs, model-sampling patches), nearest first."""
    return [node for _, node in _upstream(graph, sampler.inputs.get("model"), lambda key, *_: key == "model")]


def _flux_guidance(graph: Graph, positive: Any) -> float | None:
    """The nearest FluxGuidance (or CLIPTextEncodeFlux) value on the positive side."""
    for _, node in _upstream(graph, positive, _conditioning_input, lambda n: _is_sampler(n) or _zeroed(n)):
        value = _inputs(node).get("guidance")
        if _class(node) in ("FluxGuidance", "CLIPTextEncodeFlux") and isinstance(value, (int, float)) \
                and not isinstance(value, bool):
            return float(value)
    return None


def _is_flow(graph: Graph, sampler: _Sampler, models: list[dict], flux_guidance: float | None) -> bool:
    if flux_guidance is not None:
        return True
    nearby = list(models)
    for key in ("sigmas", "latent_image", "positive", "conditioning"):
        nearby += [n for _, n in _upstream(graph, sampler.inputs.get(key), stop=_is_sampler)]
    for node in nearby:
        inputs = _inputs(node)
        if _class(node) in _FLOW_NODES or str(inputs.get("type", "")).casefold() in _FLOW_CLIP_TYPES:
            return True
        if any(isinstance(inputs.get(k), str) and _FLOW_NAMES.search(inputs[k]) for k in ("ckpt_name", "unet_name")):
            return True
    return False


def _api_node(graph: Graph, draft: Draft) -> bool:
    """A cloud API node (Stability's, for one) that made the picture itself: it holds the prompt and
    settings as its own inputs, with no sampler. Reads what it can; False if the output has none."""
    for _, output in _outputs(graph):
        found = _node(graph, _inputs(output).get("images"))
        inputs = _inputs(found[1]) if found else {}
        if not isinstance(inputs.get("prompt"), str):
            continue
        draft.take("prompt", inputs["prompt"].strip())
        draft.take("negative_prompt", inputs.get("negative_prompt") if isinstance(inputs.get("negative_prompt"),
                                                                                 str) else None)
        draft.take_from(inputs, guidance="cfg_scale", seed="seed", steps="steps")
        if isinstance(inputs.get("width"), int) and isinstance(inputs.get("height"), int):
            draft.take_size(inputs["width"], inputs["height"])
        draft.notes.append(f"made by the cloud node {_class(found[1])}, not a local sampler")
        for key in ("aspect_ratio", "style_preset"):
            if isinstance(inputs.get(key), str) and inputs[key] not in ("", "None"):
                draft.not_used(f"{key.replace('_', ' ')} {inputs[key]}")
        if isinstance(inputs.get("model"), str):
            draft.not_used(f"model {inputs['model']}")
        return True
    return False


def _utf8(text: str) -> str:
    """ComfyUI's editor writes a workflow's UTF-8 bytes into a tEXt chunk, which PNG readers take as
    Latin-1 (Chinese prompts come out as "æµ..."); read them back as UTF-8 where they are valid UTF-8."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return text


def _graph_from(text: str | None, what: str) -> Graph:
    try:
        graph = json.loads(_utf8(text)) if text is not None else {}
    except ValueError:
        raise MetadataError(f"the ComfyUI {what} metadata is not valid JSON") from None
    if not isinstance(graph, dict):
        raise MetadataError(f"the ComfyUI {what} metadata is not a node graph")
    return graph


def comfyui_import(prompt_json: str | None, image_size: tuple[int, int] | None = None,
                   workflow_json: str | None = None) -> Imported:
    """Settings from the API ``prompt`` graph, or from the editor's ``workflow`` where the prompt
    graph is missing or holds no sampler (an image saved by a graph that only copied a picture)."""
    graph: Graph = {}
    problem = None
    try:
        graph = _graph_from(prompt_json, "prompt")
    except MetadataError as error:
        problem = error
    found = _final_sampler(graph, image_size)
    if found is not None:
        return _import(graph, found, image_size, False)
    workflow: Graph = {}
    raw: Any = None
    if workflow_json is not None:
        try:
            raw = _graph_from(workflow_json, "workflow")
            workflow = workflow_to_prompt(raw)
        except (MetadataError, RecursionError):
            workflow = {}
        found = _final_sampler(workflow, image_size)
        if found is not None:
            return _import(workflow, found, image_size, True)
    for tried in (graph, workflow):
        draft = Draft("ComfyUI")
        if _api_node(tried, draft):
            if tried is workflow:
                draft.notes.insert(0, "read from the editor's workflow: the prompt graph has no sampler")
            return draft.finish()
    if problem is not None and workflow_json is None:
        raise problem
    if _group_nodes(raw):
        raise MetadataError("the ComfyUI graph has no sampler node sdtui can read: its workflow keeps it in a "
                            "group node, an older editor format sdtui does not read")
    raise MetadataError("the ComfyUI graph has no sampler node to read settings from")


def _group_nodes(workflow: Any) -> bool:
    """Whether the workflow uses the editor's older group nodes ("workflow>Name"), kept in extra.groupNodes."""
    extra = workflow.get("extra") if isinstance(workflow, dict) else None
    return isinstance(extra, dict) and bool(extra.get("groupNodes"))


def _import(graph: Graph, found: tuple[str, dict], image_size: tuple[int, int] | None,
            from_workflow: bool) -> Imported:
    sampler = _Sampler(graph, found[1])
    draft = Draft("ComfyUI")
    if from_workflow:
        draft.notes.append("read from the editor's workflow: the prompt graph has no sampler")
    positive, negative = sampler.conditioning
    texts = _texts(graph, positive)
    draft.take("prompt", "\n".join(texts))
    if len(texts) > 1:
        draft.notes.append(f"the positive side combines {len(texts)} text encoders (areas or blends); "
                           "their texts are joined into one prompt")
    negatives = _texts(graph, negative)
    draft.take("negative_prompt", "\n".join(negatives))
    if not negatives and any(_zeroed(n) for _, n in _upstream(graph, negative, _conditioning_input, _is_sampler)):
        draft.notes.append("the negative is zeroed (ConditioningZeroOut): no negative text")
    models = _model_nodes(graph, sampler)
    flux_guidance = _flux_guidance(graph, positive)
    flow = _is_flow(graph, sampler, models, flux_guidance)
    _take_guidance(draft, sampler, flux_guidance, flow)
    draft.take_from(sampler, steps="steps")
    draft.take("seed", sampler.seed)
    width, height, earlier = sampler.latent()
    if width and height:
        draft.take_size(width, height)
    elif image_size and earlier is None and all(n % 8 == 0 and SIZE_MIN <= n <= SIZE_MAX for n in image_size):
        draft.take_size(*image_size)  # img2img from a loaded picture: the output keeps its size
    name = str(sampler.get("sampler_name") or "")
    schedule, sigmas = sampler.get("scheduler"), _node(graph, sampler.inputs.get("sigmas"))
    if schedule is not None or sigmas is None:  # a KSampler names its schedule (the oldest graphs may not)
        schedule = str(schedule or "normal")
        draft.take_scheduler(scheduler_from_comfyui(name, schedule, flow), f"{name} with the {schedule} schedule"
                             if name else "")
    else:  # a sigmas node with no schedule name: only FLUX.2's own has an equivalent
        own = flow and _class(sigmas[1]) == "Flux2Scheduler"
        draft.take_scheduler(scheduler_from_comfyui(name, None, flow) if own else None,
                             f"{name} with {_class(sigmas[1])}'s sigmas" if name else "")
    if sampler.denoise < 1.0:
        source = "an earlier pass" if earlier else "an input image"
        draft.not_used(f"denoise {sampler.denoise:.2f} (it refined {source}; sdtui runs text-to-image)")
    if earlier:
        first = _Sampler(graph, earlier[1])
        draft.not_used(f"the earlier pass ({first.get('steps')} steps of {first.get('sampler_name')})")
    pictures = sorted({_class(node) for _, node in _upstream(graph, positive, _conditioning_input, _is_sampler)
                       if _class(node) in _IMAGE_CONDITIONING and any(_is_link(_inputs(node).get(k))
                                                                       for k in _IMAGE_INPUTS)})
    if pictures:
        draft.not_used(f"the input picture of {', '.join(pictures)}")
    for node in models:
        inputs = _inputs(node)
        for key in ("ckpt_name", "unet_name"):
            if isinstance(inputs.get(key), str):
                draft.not_used(f"model {inputs[key]}")
        if isinstance(inputs.get("lora_name"), str):
            draft.not_used(f"LoRA {inputs['lora_name']}")
        if _class(node) in _SHIFT_NODES:
            values = [inputs.get(k) for k in _SHIFT_NODES[_class(node)]]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                continue
            if len(values) == 1:  # AuraFlow's and SD3's: one shift for every size, as sdtui's
                draft.take("shift", values[0])
            else:  # FLUX's shift by image size, between these two: the model's own schedule does that
                draft.not_used(f"shift {'/'.join(f'{v:g}' for v in values)} ({_class(node)})")
    return draft.finish()


def _take_guidance(draft: Draft, sampler: _Sampler, flux_guidance: float | None, flow: bool) -> None:
    """FluxGuidance's value is the guidance of FLUX.1 dev, Kontext and FLUX.2 (their sampler's cfg
    stays 1 or is absent); otherwise the sampler's or CFGGuider's cfg. BasicGuider has neither."""
    cfg = sampler.get("cfg")
    if flux_guidance is not None:
        draft.take("guidance", flux_guidance)
        extra = f"; the sampler's CFG {cfg:g} is not used" if isinstance(cfg, (int, float)) and cfg != 1 else ""
        draft.notes.append(f"guidance is FLUX's distilled guidance (FluxGuidance {flux_guidance:g}){extra}")
    elif cfg is not None:
        draft.take("guidance", cfg)
        if flow:
            draft.notes.append(f"guidance is the sampler's CFG scale ({cfg:g})" if isinstance(cfg, (int, float))
                               else "guidance is the sampler's CFG scale")
    elif flow:
        draft.notes.append("the graph sets no guidance (no CFG and no FluxGuidance); the current guidance is kept")
