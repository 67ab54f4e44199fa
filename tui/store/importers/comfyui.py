"""ComfyUI's ``prompt`` chunk: the API-format node graph it ran.

The settings come from the sampler that feeds the saved image, found by walking back from the
SaveImage node; the prompts from every text encoder behind that sampler's positive and negative
inputs, through whatever nodes sit in between (areas, ControlNet, unCLIP, combines).
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any, Callable, Iterator

from tui.engine.request import SIZE_MAX, SIZE_MIN
from tui.engine.schedulers import scheduler_from_comfyui
from tui.store.images import MetadataError
from tui.store.importers.draft import Draft, Imported

Graph = dict[str, dict[str, Any]]
_TEXT_KEYS = ("text", "text_g", "text_l", "prompt", "string", "value")
_WALK_LIMIT = 10_000  # nodes visited per walk; a graph is finite, this only bounds a malformed one
# Inputs that lead away from the prompt: pictures, models, masks. Conditioning never comes through them.
_NOT_CONDITIONING = {"clip", "image", "images", "pixels", "samples", "vae", "model", "control_net",
                     "clip_vision", "clip_vision_output", "mask", "latent_image", "style_model"}
_LATENT_PATH = {"samples", "latent_image", "latent", "pixels", "image", "images"}


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


def _texts(graph: Graph, link: Any) -> list[str]:
    """The texts of every text encoder behind a conditioning link, without repeats."""
    texts: list[str] = []
    for _, node in _upstream(graph, link, _conditioning_input, _is_sampler):
        inputs = _inputs(node)
        if ("clip" not in inputs and "TextEncode" not in str(node.get("class_type", ""))) or _is_sampler(node):
            continue
        for key in ("text", "text_g", "text_l", "prompt"):
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


def comfyui_import(prompt_json: str, image_size: tuple[int, int] | None = None) -> Imported:
    try:
        graph = json.loads(prompt_json)
    except ValueError:
        raise MetadataError("the ComfyUI prompt metadata is not valid JSON") from None
    if not isinstance(graph, dict):
        raise MetadataError("the ComfyUI prompt metadata is not a node graph")
    found = _final_sampler(graph, image_size)
    if found is None:
        raise MetadataError("the ComfyUI graph has no sampler node to read settings from")
    sampler = _Sampler(graph, found[1])
    draft = Draft("ComfyUI")
    positive, negative = sampler.conditioning
    texts = _texts(graph, positive)
    draft.take("prompt", "\n".join(texts))
    if len(texts) > 1:
        draft.notes.append(f"the positive side combines {len(texts)} text encoders (areas or blends); "
                           "their texts are joined into one prompt")
    draft.take("negative_prompt", "\n".join(_texts(graph, negative)))
    draft.take_from(sampler, steps="steps", guidance="cfg")
    draft.take("seed", sampler.seed)
    width, height, earlier = sampler.latent()
    if width and height:
        draft.take_size(width, height)
    elif image_size and earlier is None and all(n % 8 == 0 and SIZE_MIN <= n <= SIZE_MAX for n in image_size):
        draft.take_size(*image_size)  # img2img from a loaded picture: the output keeps its size
    name, schedule = str(sampler.get("sampler_name") or ""), str(sampler.get("scheduler") or "normal")
    draft.take_scheduler(scheduler_from_comfyui(name, schedule),
                         f"{name} with the {schedule} schedule" if name else "")
    if sampler.denoise < 1.0:
        source = "an earlier pass" if earlier else "an input image"
        draft.not_used(f"denoise {sampler.denoise:.2f} (it refined {source}; sdtui runs text-to-image)")
    if earlier:
        first = _Sampler(graph, earlier[1])
        draft.not_used(f"the earlier pass ({first.get('steps')} steps of {first.get('sampler_name')})")
    for _, node in _upstream(graph, sampler.inputs.get("model"), lambda key, *_: key == "model"):
        if isinstance(_inputs(node).get("ckpt_name"), str):
            draft.not_used(f"model {_inputs(node)['ckpt_name']}")
        if isinstance(_inputs(node).get("lora_name"), str):
            draft.not_used(f"LoRA {_inputs(node)['lora_name']}")
    return draft.finish()
