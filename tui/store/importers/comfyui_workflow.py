"""ComfyUI's ``workflow`` chunk (the editor's graph) turned into the API form of the ``prompt`` chunk,
for images that carry only the workflow or whose prompt graph holds no sampler.

The editor keeps links apart from nodes and a node's settings as a list of widget values without
names; the names come from the node's inputs that say which widget they are, or, for the core
nodes whose workflows predate that, from the table below. Bypassed nodes (mode 4) pass their input
of the same type through, muted ones (mode 2) are left out, reroutes are followed, and subgraphs
(``definitions.subgraphs``) are flattened with ids like "57:35", as ComfyUI does when it runs them.
"""

from __future__ import annotations

from typing import Any, Callable

Graph = dict[str, dict[str, Any]]
_MUTED, _BYPASSED = 2, 4
_SUBGRAPH_IN, _SUBGRAPH_OUT = -10, -20
_DEPTH_LIMIT = 16  # subgraphs inside subgraphs; only bounds a malformed workflow
# The value ComfyUI's editor adds after a seed widget: it says what happens to the seed next run.
_CONTROL = "control_after_generate"
_CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}

# Widget names in the order the editor stores their values, for the nodes whose settings the import reads.
WIDGETS: dict[str, tuple[str, ...]] = {
    "KSampler": ("seed", _CONTROL, "steps", "cfg", "sampler_name", "scheduler", "denoise"),
    "KSamplerAdvanced": ("add_noise", "noise_seed", _CONTROL, "steps", "cfg", "sampler_name", "scheduler",
                         "start_at_step", "end_at_step", "return_with_leftover_noise"),
    "SamplerCustom": ("add_noise", "noise_seed", _CONTROL, "cfg"),
    "RandomNoise": ("noise_seed", _CONTROL),
    "KSamplerSelect": ("sampler_name",),
    "BasicScheduler": ("scheduler", "steps", "denoise"),
    "Flux2Scheduler": ("steps", "width", "height"),
    "CFGGuider": ("cfg",),
    "FluxGuidance": ("guidance",),
    "CLIPTextEncode": ("text",),
    "CLIPTextEncodeFlux": ("clip_l", "t5xxl", "guidance"),
    "CLIPTextEncodeSDXL": ("width", "height", "crop_w", "crop_h", "target_width", "target_height", "text_g",
                           "text_l"),
    "TextEncodeQwenImageEdit": ("prompt",),
    "TextEncodeQwenImageEditPlus": ("prompt",),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "EmptySD3LatentImage": ("width", "height", "batch_size"),
    "EmptyFlux2LatentImage": ("width", "height", "batch_size"),
    "CheckpointLoaderSimple": ("ckpt_name",),
    "UNETLoader": ("unet_name", "weight_dtype"),
    "LoraLoader": ("lora_name", "strength_model", "strength_clip"),
    "LoraLoaderModelOnly": ("lora_name", "strength_model"),
    "ModelSamplingFlux": ("max_shift", "base_shift", "width", "height"),
    "ModelSamplingAuraFlow": ("shift",),
    "ModelSamplingSD3": ("shift",),
    # Stability AI's cloud node: it holds the prompt and settings itself (no sampler)
    "StabilityStableImageSD_3_5Node": ("prompt", "model", "aspect_ratio", "style_preset", "cfg_scale", "seed",
                                       _CONTROL, "image_denoise"),
    "PrimitiveString": ("value",),
    "PrimitiveStringMultiline": ("value",),
    "PrimitiveInt": ("value", _CONTROL),
    "PrimitiveFloat": ("value",),
}
_NOT_NODES = {"Note", "MarkdownNote", "PrimitiveNode", "Reroute"}

Resolved = tuple[str, Any] | None  # ("link", [node id, slot]) or ("value", a widget's value), or nothing


def _key(value: Any) -> bool:
    """Ids are numbers or strings; anything else in a damaged workflow is passed over."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _entries(node: dict[str, Any], key: str) -> list[dict[str, Any]]:
    found = node.get(key)
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def _links(raw: Any) -> dict[Any, tuple[Any, int, str]]:
    """Link id -> (origin node id, origin slot, type); top-level links are lists, subgraphs' are objects."""
    links: dict[Any, tuple[Any, int, str]] = {}
    for link in raw if isinstance(raw, list) else []:
        if isinstance(link, list) and len(link) >= 6 and _key(link[0]):
            links[link[0]] = (link[1], link[2], str(link[5]))
        elif isinstance(link, dict) and _key(link.get("id")):
            links[link["id"]] = (link.get("origin_id"), link.get("origin_slot", 0), str(link.get("type")))
    return links


def _widget_values(node: dict[str, Any]) -> dict[str, Any]:
    values = node.get("widgets_values")
    if isinstance(values, dict):
        return dict(values)
    if not isinstance(values, list):
        return {}
    names = WIDGETS.get(str(node.get("type")))
    if names is None:  # newer workflows name every widget among the node's inputs
        names = tuple(str(i["widget"]["name"]) for i in _entries(node, "inputs")
                      if isinstance(i.get("widget"), dict) and "name" in i["widget"])
    found, position = {}, 0
    for name in names:
        if position >= len(values):
            break
        if name == _CONTROL and not _control(values[position]):
            continue  # older workflows wrote no control value
        found[name] = values[position]
        position += 1
        if (position < len(values) and _control(values[position]) and isinstance(found[name], int)
                and _CONTROL not in names):
            position += 1  # a seed widget's control value, for nodes outside the table
    found.pop(_CONTROL, None)
    return found


def _control(value: Any) -> bool:
    return isinstance(value, str) and value in _CONTROL_VALUES


class _Scope:
    """One level of the workflow: the top graph, or a subgraph's inside as one instance uses it."""

    def __init__(self, nodes: Any, links: Any, prefix: str, subgraphs: dict[str, dict], graph: Graph,
                 outer_input: Callable[[int], Resolved], depth: int):
        self.nodes = {n["id"]: n for n in nodes if isinstance(n, dict) and _key(n.get("id"))} \
            if isinstance(nodes, list) else {}
        self.links = _links(links)
        self.prefix, self.subgraphs, self.graph = prefix, subgraphs, graph
        self.outer_input, self.depth = outer_input, depth
        self.inner: dict[Any, _Scope] = {}

    def resolve(self, link_id: Any, seen: frozenset = frozenset()) -> Resolved:
        """Where a link really starts, past reroutes, bypassed nodes and subgraph boundaries."""
        if not _key(link_id) or link_id in seen or link_id not in self.links:
            return None
        seen = seen | {link_id}
        origin, slot, kind = self.links[link_id]
        if origin == _SUBGRAPH_IN:
            return self.outer_input(slot)
        node = self.nodes.get(origin) if _key(origin) else None
        if node is None or node.get("mode") == _MUTED:
            return None
        inputs = _entries(node, "inputs")
        if node.get("type") == "Reroute" or node.get("mode") == _BYPASSED:
            through = [i for i in inputs if i.get("link") is not None
                       and (node.get("type") == "Reroute" or i.get("type") == kind)]
            return self.resolve(through[0]["link"], seen) if through else None
        if node.get("type") == "PrimitiveNode":
            values = node.get("widgets_values")
            return ("value", values[0]) if isinstance(values, list) and values else None
        inner = self.subgraph_scope(node)
        if inner is not None:
            outputs = _entries(inner.definition, "outputs")
            ids = outputs[slot].get("linkIds") if isinstance(slot, int) and 0 <= slot < len(outputs) else None
            return inner.resolve(ids[0]) if isinstance(ids, list) and ids else None
        return "link", [self.prefix + str(origin), slot if isinstance(slot, int) else 0]

    def subgraph_scope(self, node: dict[str, Any]) -> "_Scope | None":
        definition = self.subgraphs.get(str(node.get("type")))
        if definition is None or self.depth >= _DEPTH_LIMIT:
            return None
        if node["id"] not in self.inner:
            self.inner[node["id"]] = _SubgraphScope(self, node, definition)
        return self.inner[node["id"]]

    def add_nodes(self) -> None:
        for node_id, node in self.nodes.items():
            if node.get("mode") in (_MUTED, _BYPASSED) or str(node.get("type")) in _NOT_NODES:
                continue
            inner = self.subgraph_scope(node)
            if inner is not None:
                inner.add_nodes()
                continue
            inputs = _widget_values(node)
            for entry in _entries(node, "inputs"):
                if entry.get("link") is not None and isinstance(entry.get("name"), str):
                    resolved = self.resolve(entry["link"])
                    if resolved is not None:
                        inputs[entry["name"]] = resolved[1]
            self.graph[self.prefix + str(node_id)] = {"class_type": str(node.get("type")), "inputs": inputs}


class _SubgraphScope(_Scope):
    def __init__(self, outer: _Scope, instance: dict[str, Any], definition: dict[str, Any]):
        self.definition = definition
        self.outer, self.instance = outer, instance
        slots = _entries(definition, "inputs")
        linked = {i.get("name"): i for i in _entries(instance, "inputs") if _key(i.get("name"))}
        # Promoted widgets: the instance keeps, in order, the values of the inputs it shows as widgets.
        values = instance.get("widgets_values") if isinstance(instance.get("widgets_values"), list) else []
        shown = [s for s in slots if _key(s.get("name")) and linked.get(s["name"], {}).get("link") is None]
        self.promoted = {s["name"]: v for s, v in zip(shown, values)}
        self.slots, self.linked = slots, linked
        super().__init__(definition.get("nodes"), definition.get("links"), f"{outer.prefix}{instance['id']}:",
                         outer.subgraphs, outer.graph, self.from_outside, outer.depth + 1)

    def from_outside(self, slot: int) -> Resolved:
        if not isinstance(slot, int) or not 0 <= slot < len(self.slots):
            return None
        name = self.slots[slot].get("name")
        if not _key(name):
            return None
        entry = self.linked.get(name)
        if entry is not None and entry.get("link") is not None:
            return self.outer.resolve(entry["link"])
        return ("value", self.promoted[name]) if name in self.promoted else None


def workflow_to_prompt(workflow: Any) -> Graph:
    """The API-form graph of an editor workflow; empty when it holds no nodes."""
    if not isinstance(workflow, dict):
        return {}
    definitions = workflow.get("definitions")
    subgraphs = definitions.get("subgraphs") if isinstance(definitions, dict) else None
    by_id = {str(s["id"]): s for s in subgraphs or [] if isinstance(s, dict) and "id" in s}
    graph: Graph = {}
    _Scope(workflow.get("nodes"), workflow.get("links"), "", by_id, graph, lambda slot: None, 0).add_nodes()
    return graph
