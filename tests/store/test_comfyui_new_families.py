"""ComfyUI graphs of the newer model families (FLUX.1, Kontext, FLUX.2, Z-Image, Qwen-Image and its
Edit, SD3.5, Chroma), imported from PNGs rebuilt with their real metadata.

The data, tests/data/comfyui_new_families.json, is the "new_families" group of the project's
collection of other tools' metadata: the PNG text chunks ("prompt", the API graph ComfyUI ran, and
"workflow", the editor's graph) of the example images in Comfy-Org/example_workflows and
comfyanonymous/ComfyUI_examples (each item's `source` names the repository, commit and file), with
the truth read by hand from each graph: save node, sampler, conditioning, text encoders (`notes`
says which path was followed and why). Each test image is a blank image of the item's `size` with
each chunk added as a text chunk, as the collection's README says.
"""

import json
import random
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tui.store.images import MetadataError
from tui.store.importers import import_png
from tui.store.importers.comfyui import comfyui_import
from tui.store.importers.comfyui_workflow import workflow_to_prompt

ITEMS = {item["name"]: item for item in
         json.loads((Path(__file__).parents[1] / "data" / "comfyui_new_families.json").read_text("utf-8"))}
# ComfyUI's schedules that are FlowMatch Euler with euler on a flow model (a Flux2Scheduler names none).
FLOW_SCHEDULES = {"simple", "normal", "sgm_uniform", None}

# Reading the editor's workflow alone, where it disagrees with the graph that ran (the truth):
# the editor saves its state after the run, so a "randomize" seed has moved on, and some example
# workflows were edited after their picture was made.
WORKFLOW_DIFFERS = {
    "ew_flux_dev_t5fp16.png": {"seed"},  # randomized after the run
    "ew_flux1_canny_dev.png": {"seed"},
    "ew_flux1_fill_inpaint.png": {"seed"},
    "ew_flux1_bytedance_uso.png": {"seed"},
    "ew_qwen_image_union_control_lora.png": {"seed"},
    "ew_flux1_krea_dev.png": {"size"},  # the workflow's latent is 1024x1024, the run's 1920x1088
    "ew_flux1_depth_dev_lora.png": {"guidance"},  # the workflow wires the other FluxGuidance (30, not 35)
    # the workflow is another run: a Chinese prompt, 20 steps at CFG 2.5 without the Lightning LoRA's 4 at 1
    "ew_qwen_image_instantx_controlnet.png": {"prompt", "seed", "steps", "guidance"},
}
# Workflows the import cannot read on their own (the prompt graph of both is read in full).
WORKFLOW_REFUSED = {
    "ew_flux1_kontext_dev_grouped.png": "group node",  # the older editor's group nodes (extra.groupNodes)
}


def png(tmp_path, item, keys=("prompt", "workflow")):
    meta = PngInfo()
    for key, value in item["chunks"].items():
        if key in keys:
            meta.add_text(key, value)
    path = tmp_path / "image.png"
    Image.new("RGB", tuple(item["size"])).save(path, pnginfo=meta)
    return path


def expected(item) -> dict:
    """What sdtui should take from the truth: guidance is FluxGuidance's value where the graph has one,
    else the sampler's CFG, and none for a BasicGuider with neither."""
    truth = item["truth"]
    found = {"prompt": truth["prompts"][0].strip()}
    if truth["seeds"]:
        found["seed"] = int(truth["seeds"][0])
    if truth["steps"]:
        found["steps"] = int(truth["steps"][0])
    found["guidance"] = truth["guidance"]
    if truth["guidance"] is None and truth["cfg"]:
        found["guidance"] = float(truth["cfg"][0])
    if truth["width"]:
        found["size"] = (truth["width"], truth["height"])
    elif truth["sampler"]:  # no empty latent: img2img of a loaded picture keeps the file's size
        found["size"] = tuple(item["size"])
    if truth["sampler"]:
        flow = truth["sampler"] == "euler" and truth["scheduler"] in FLOW_SCHEDULES
        found["scheduler"] = "FlowMatch Euler" if flow else None
    if truth["negative_kind"] in ("text", "zeroed"):
        found["negative_prompt"] = (truth["negative"] or "").strip()
    return found


def check(imported, want: dict, skip=frozenset()) -> None:
    values = imported.values
    for key, value in want.items():
        if key in skip:
            continue
        if key == "size":
            assert (values.get("width"), values.get("height")) == value
        elif key in ("guidance", "scheduler") and value is None:
            assert key not in values, (key, values.get(key))
        else:
            assert values.get(key) == value, key


@pytest.mark.parametrize("name", sorted(ITEMS))
def test_new_family_graph_gives_the_truth(tmp_path, name):
    item = ITEMS[name]
    imported = import_png(png(tmp_path, item))
    truth = item["truth"]
    assert imported.source == "ComfyUI"
    check(imported, expected(item))
    notes = " | ".join(imported.notes)
    assert f"model {truth['model']}" in notes
    for lora in truth["loras"]:
        assert f"LoRA {lora}" in notes
    if truth["negative_kind"] == "zeroed":
        assert "zeroed (ConditioningZeroOut)" in notes
    if item["family"] in ("flux-kontext", "qwen-image-edit"):  # edits of a picture sdtui does not send
        assert "the input picture of " in notes
    if truth["guidance"] is not None:
        assert f"FluxGuidance {truth['guidance']:g}" in notes
    elif truth["cfg"] and truth["sampler"]:
        assert "guidance is the sampler's CFG scale" in notes


@pytest.mark.parametrize("name", sorted(set(ITEMS) - set(WORKFLOW_REFUSED)))
def test_the_workflow_alone_gives_the_same_settings(tmp_path, name):
    """Images saved with the editor's graph only (no "prompt" chunk): the same walk, over the workflow
    turned into the API form, subgraphs flattened and bypassed nodes passed through."""
    item = ITEMS[name]
    imported = import_png(png(tmp_path, item, keys=("workflow",)))
    assert imported.notes[0] == "read from the editor's workflow: the prompt graph has no sampler"
    check(imported, expected(item), skip=WORKFLOW_DIFFERS.get(name, frozenset()))


@pytest.mark.parametrize("name", sorted(WORKFLOW_REFUSED))
def test_unreadable_workflows_are_one_sentence(tmp_path, name):
    with pytest.raises(MetadataError) as caught:
        import_png(png(tmp_path, ITEMS[name], keys=("workflow",)))
    assert WORKFLOW_REFUSED[name] in str(caught.value) and "\n" not in str(caught.value)


def test_a_prompt_graph_without_a_sampler_falls_back_to_the_workflow(tmp_path):
    """Qwen-Image-Edit's example: its prompt graph only copies a loaded picture (LoadImage -> SaveImage),
    the workflow holds the real graph, whose Lightning LoRA is bypassed (mode 4) and so not named."""
    item = ITEMS["ew_qwen_image_edit_stub_prompt.png"]
    assert item["truth"]["ambiguous"]
    imported = import_png(png(tmp_path, item))
    assert imported.values["prompt"].startswith("Remove all UI text elements from the image.")
    assert imported.values["seed"] == 976480016588017 and imported.values["steps"] == 20
    assert imported.values["guidance"] == 2.5 and imported.values["scheduler"] == "FlowMatch Euler"
    assert imported.notes[0] == "read from the editor's workflow: the prompt graph has no sampler"
    assert "Lightning" not in " ".join(imported.notes)
    assert imported.values["shift"] == 3.0  # ModelSamplingAuraFlow's, one shift for every size as sdtui's


def test_the_cloud_node_is_a_partial_import():
    item = ITEMS["ew_sd35_stability_api_node.png"]
    for imported in (comfyui_import(item["chunks"]["prompt"], (1024, 1024)),
                     comfyui_import(None, (1024, 1024), item["chunks"]["workflow"])):
        assert imported.values == {"prompt": item["truth"]["prompts"][0], "seed": 0, "guidance": 4.0}
        assert "made by the cloud node StabilityStableImageSD_3_5Node, not a local sampler" in imported.notes
        assert imported.notes[-1] == "not applied here: aspect ratio 1:1, style preset cinematic, model sd3.5-large"


def test_shift_and_flux_guidance_notes():
    flux = comfyui_import(ITEMS["ce_flux_kontext_example.png"]["chunks"]["prompt"], (1024, 1024))
    assert flux.notes == ["guidance is FLUX's distilled guidance (FluxGuidance 2.5)",
                          "not applied here: the input picture of ReferenceLatent, shift 1.15/0.5 (ModelSamplingFlux), "
                          "model flux1-kontext-dev.safetensors"]
    depth = comfyui_import(ITEMS["ew_flux1_depth_dev_lora.png"]["chunks"]["prompt"], (1024, 1024))
    assert depth.notes[0] == "guidance is FLUX's distilled guidance (FluxGuidance 35); the sampler's CFG 2 is not used"
    schnell = comfyui_import(ITEMS["ce_flux_schnell_example.png"]["chunks"]["prompt"], (1024, 1024))
    assert "guidance" not in schnell.values
    assert schnell.notes[0] == "the graph sets no guidance (no CFG and no FluxGuidance); the current guidance is kept"


def test_a_sampler_with_no_flow_equivalent_keeps_the_scheduler():
    graph = json.loads(ITEMS["ce_z_image_turbo_example.png"]["chunks"]["prompt"])
    graph["3"]["inputs"]["scheduler"] = "karras"
    imported = comfyui_import(json.dumps(graph), (1024, 1024))
    assert "scheduler" not in imported.values
    assert ("sampler euler with the karras schedule has no exact equivalent in sdtui; the current scheduler is kept"
            in imported.notes)


def _with_sampler(name: str, sampler: str, schedule: str | None = None) -> str:
    """The graph of ``name`` with another sampler (KSampler's or KSamplerSelect's) and schedule."""
    graph = json.loads(ITEMS[name]["chunks"]["prompt"])
    for node in graph.values():
        if "sampler_name" in node["inputs"]:
            node["inputs"]["sampler_name"] = sampler
        if schedule and "scheduler" in node["inputs"]:
            node["inputs"]["scheduler"] = schedule
    return json.dumps(graph)


@pytest.mark.parametrize("name", ["ce_z_image_turbo_example.png", "ew_flux_dev_fp8.png", "ce_flux_schnell_example.png",
                                  "ce_sd35_simple_example.png"])
@pytest.mark.parametrize("sampler, ours", [("uni_pc", "FlowMatch UniPC"), ("uni_pc_bh2", "FlowMatch UniPC"),
                                           ("dpmpp_2m", "FlowMatch DPM++ 2M")])
def test_multistep_samplers_on_a_flow_model_are_the_flow_sigma_ones(name, sampler, ours):
    assert comfyui_import(_with_sampler(name, sampler), (1024, 1024)).values["scheduler"] == ours
    karras = comfyui_import(_with_sampler(name, sampler, "karras"), (1024, 1024))
    assert "scheduler" not in karras.values
    assert (f"sampler {sampler} with the karras schedule has no exact equivalent in sdtui; the current scheduler "
            "is kept") in karras.notes


def test_flux2s_own_sigmas_take_the_multistep_samplers_too():
    imported = comfyui_import(_with_sampler("ce_flux2_example.png", "dpmpp_2m"), (1024, 1024))
    assert imported.values["scheduler"] == "FlowMatch DPM++ 2M"


def test_sigmas_from_a_node_without_a_schedule_name_have_no_equivalent():
    """FLUX.2's Flux2Scheduler is FlowMatch Euler's own schedule; a Karras sigmas node on FLUX is not."""
    graph = json.loads(ITEMS["ce_flux_schnell_example.png"]["chunks"]["prompt"])
    graph["17"] = {"class_type": "KarrasScheduler", "inputs": {"steps": 4, "sigma_max": 14.6, "sigma_min": 0.03,
                                                                "rho": 7.0}}
    imported = comfyui_import(json.dumps(graph), (1024, 1024))
    assert "scheduler" not in imported.values and imported.values["steps"] == 4
    assert ("sampler euler with KarrasScheduler's sigmas has no exact equivalent in sdtui; the current scheduler "
            "is kept") in imported.notes


def test_workflow_text_written_as_raw_utf8_is_read_back(tmp_path):
    """The editor writes a workflow's UTF-8 bytes into a tEXt chunk; read as Latin-1 they are mojibake."""
    editor = _workflow(
        nodes=[_n(1, "CLIPTextEncode", ["沙漠中的灯塔"]),
               _n(2, "KSampler", [5, "fixed", 8, 3.0, "euler", "normal", 1], inputs=[("positive", 1)]),
               _n(3, "SaveImage", ["x"], inputs=[("images", 2)])],
        links=[[1, 1, 0, 2, 0, "CONDITIONING"], [2, 2, 0, 3, 0, "LATENT"]])
    meta = PngInfo()
    meta.add_text("workflow", json.dumps(editor, ensure_ascii=False).encode("utf-8"))
    path = tmp_path / "raw.png"
    Image.new("RGB", (64, 64)).save(path, pnginfo=meta)
    imported = import_png(path)
    assert imported.values["prompt"] == "沙漠中的灯塔" and imported.values["seed"] == 5


def _n(node_id, kind, widgets, inputs=(), outputs=1, mode=0):
    return {"id": node_id, "type": kind, "mode": mode, "widgets_values": widgets,
            "inputs": [{"name": name, "type": "ANY", "link": link} for name, link in inputs],
            "outputs": [{"name": "out", "type": "ANY", "links": []} for _ in range(outputs)]}


def _link(link_id, origin, origin_slot, target, target_slot, kind):
    """A subgraph's link (an object; the top level's are lists); -10 is the subgraph's input side, -20 its output."""
    return {"id": link_id, "origin_id": origin, "origin_slot": origin_slot, "target_id": target,
            "target_slot": target_slot, "type": kind}


def _workflow(nodes, links, subgraphs=()):
    return {"nodes": nodes, "links": links, "definitions": {"subgraphs": list(subgraphs)}}


def test_workflow_subgraph_with_a_promoted_widget_a_bypassed_lora_and_a_reroute():
    """A sampler inside a subgraph whose steps are promoted to the instance's widgets; the model comes
    through a bypassed LoRA (passed through by type) and a reroute; a muted encoder is left out."""
    inner = {
        "id": "sub-1", "inputs": [{"name": "positive", "type": "CONDITIONING", "linkIds": [11]},
                                  {"name": "model", "type": "MODEL", "linkIds": [12]},
                                  {"name": "steps", "type": "INT", "linkIds": [13]}],
        "outputs": [{"name": "LATENT", "type": "LATENT", "linkIds": [14]}],
        "nodes": [{"id": 7, "type": "KSampler", "mode": 0,
                   "widgets_values": [42, "fixed", 99, 4.0, "euler", "simple", 1],
                   "inputs": [{"name": "positive", "type": "CONDITIONING", "link": 11},
                              {"name": "model", "type": "MODEL", "link": 12},
                              {"name": "steps", "type": "INT", "link": 13, "widget": {"name": "steps"}},
                              {"name": "latent_image", "type": "LATENT", "link": 15}]},
                  {"id": 8, "type": "EmptySD3LatentImage", "mode": 0, "widgets_values": [768, 512, 1]}],
        "links": [_link(11, -10, 0, 7, 0, "CONDITIONING"), _link(12, -10, 1, 7, 1, "MODEL"),
                  _link(13, -10, 2, 7, 2, "INT"), _link(15, 8, 0, 7, 3, "LATENT"), _link(14, 7, 0, -20, 0, "LATENT")],
    }
    links = [[1, 1, 0, 2, 0, "MODEL"], [2, 2, 0, 3, 0, "MODEL"], [3, 3, 0, 5, 1, "MODEL"],
             [4, 4, 0, 5, 0, "CONDITIONING"], [5, 5, 0, 6, 0, "LATENT"]]
    nodes = [_n(1, "UNETLoader", ["flux1-dev.safetensors", "default"]),
             _n(2, "LoraLoaderModelOnly", ["ink.safetensors", 1.0], inputs=[("model", 1)], mode=4),
             {**_n(3, "Reroute", [], inputs=[("", 2)]), "inputs": [{"name": "", "type": "*", "link": 2}]},
             _n(4, "CLIPTextEncode", ["a lighthouse"]),
             _n(9, "CLIPTextEncode", ["muted text"], mode=2),
             _n(5, "sub-1", [20], inputs=[("positive", 4), ("model", 3)]),
             _n(6, "SaveImage", ["x"], inputs=[("images", 5)])]
    nodes[1]["inputs"][0]["type"] = "MODEL"
    workflow = _workflow(nodes, links, [inner])
    assert sorted(workflow_to_prompt(workflow)) == ["1", "4", "5:7", "5:8", "6"]  # as ComfyUI names them when it runs
    imported = comfyui_import(None, (768, 512), json.dumps(workflow))
    assert imported.values == {"prompt": "a lighthouse", "negative_prompt": "", "guidance": 4.0, "steps": 20,
                               "seed": 42, "width": 768, "height": 512, "scheduler": "FlowMatch Euler"}
    assert imported.notes[-1] == "not applied here: model flux1-dev.safetensors"


@pytest.mark.parametrize("name", sorted(ITEMS)[::3])
def test_damaged_graphs_never_raise_anything_but_one_sentence(name):
    """Nodes removed, inputs set to odd types, links pointing nowhere or at themselves: the import
    either reads what is left (with notes) or refuses in one sentence."""
    rng = random.Random(name)
    garbage = [None, -1, 2.5, "", "x", [], {}, ["missing", 0], ["0", "0"], [1, 2, 3], True, {"a": [1]}]
    for chunk in ("prompt", "workflow"):
        for _ in range(12):
            data = json.loads(ITEMS[name]["chunks"][chunk])
            nodes = data if chunk == "prompt" else {str(i): n for i, n in enumerate(data.get("nodes", []))}
            for key in rng.sample(sorted(nodes), k=min(3, len(nodes))):
                node = nodes[key]
                fields = node.get("inputs") if chunk == "prompt" else node
                if isinstance(fields, dict) and fields:
                    fields[rng.choice(sorted(fields))] = rng.choice(garbage + [[key, 0]])
            if chunk == "prompt" and nodes:
                del data[rng.choice(sorted(data))]
            text = json.dumps(data)
            try:
                comfyui_import(text if chunk == "prompt" else None, (1024, 1024), text if chunk == "workflow" else None)
            except MetadataError as error:
                assert "\n" not in str(error)
