"""Wildcards and alternatives: a template expands (with dynamicprompts) into one job per prompt,
each stored with its prompt and its template, from the CLI and from the app."""

import json
import sqlite3

import pytest
from PIL import Image

from tests.conftest import run_sdtui
from tui.engine.request import GenerationRequest
from tui.store.importers.a1111 import a1111_import
from tui.wildcards import MAX_PROMPTS, WildcardError, expand, expanded_requests


@pytest.fixture
def cards(tmp_path):
    folder = tmp_path / "wildcards"
    (folder / "styles").mkdir(parents=True)
    (folder / "colors.txt").write_text("red\nblue\n# a comment line\n\ngreen\n")
    (folder / "styles" / "ink.txt").write_text("sumi-e\nwoodcut\n")
    return folder


@pytest.mark.parametrize("template,prompts", [
    ("a {red|blue} fox", ["a red fox", "a blue fox"]),
    ("{a|b} {c|d}", ["a c", "a d", "b c", "b d"]),
    ("a __colors__ fox", ["a blue fox", "a green fox", "a red fox"]),  # one choice a line, comments skipped
    ("__styles/ink__, (fox:1.2) <lora:ink:0.8>", ["sumi-e, (fox:1.2) <lora:ink:0.8>",
                                                  "woodcut, (fox:1.2) <lora:ink:0.8>"]),
    ("a {fox|fox} [faded]", ["a fox [faded]"]),  # repeats are queued once; A1111's syntax passes through
    ("a plain fox, no syntax", ["a plain fox, no syntax"]),
])
def test_templates_expand_to_every_combination(cards, template, prompts):
    assert expand(template, cards) == prompts


def test_bad_templates_are_one_sentence_naming_the_prompt(cards):
    with pytest.raises(WildcardError) as missing:
        expand("a __animals__ fox", cards)
    assert str(missing.value) == (f"prompt: __animals__ has no file animals.txt with lines in {cards} "
                                  "(there: colors, styles/ink)")
    with pytest.raises(WildcardError, match=r"^prompt: cannot read the alternatives at character 3 .*; "
                                            r"write \{red\|blue\} for alternatives$"):
        expand("a {red|blue fox", cards)
    with pytest.raises(WildcardError, match=f"more than {MAX_PROMPTS} prompts"):
        expand("{a|b|c|d|e} {a|b|c|d|e} {a|b|c|d|e}", cards)


def test_each_request_remembers_its_template(cards):
    request = GenerationRequest("a {red|blue} fox", seed=3)
    assert [(r.prompt, r.template, r.seed) for r in expanded_requests(request, cards)] == [
        ("a red fox", "a {red|blue} fox", 3), ("a blue fox", "a {red|blue} fox", 3)]
    plain = GenerationRequest("a fox")
    assert expanded_requests(plain, cards) == [plain]


def test_the_cli_queues_one_job_per_prompt_and_stores_the_template(sdtui_home, demo_server, cards, tmp_path):
    import shutil

    shutil.copytree(cards, sdtui_home / "wildcards")
    result = run_sdtui(["generate", "a __colors__ {fox|cat}", "--demo", "--steps", "2", "--width", "64",
                        "--height", "64", "--seed", "5", "--output", str(tmp_path / "pet.png")])
    assert result.returncode == 0, result.stderr
    assert "queued 6 jobs, one for each prompt of the template" in result.stderr
    paths = result.stdout.split()
    assert paths == [str(tmp_path / f"pet-{n}.png") for n in range(1, 7)]
    rows = sqlite3.connect(sdtui_home / "history.db").execute(
        "SELECT prompt, extra, seed FROM generations ORDER BY id").fetchall()
    assert [row[0] for row in rows] == ["a blue fox", "a blue cat", "a green fox", "a green cat", "a red fox",
                                        "a red cat"]
    assert all(json.loads(row[1]) == {"template": "a __colors__ {fox|cat}"} and row[2] == 5 for row in rows)
    text = Image.open(paths[0]).text["parameters"]
    assert text.splitlines()[0] == "a blue fox" and text.splitlines()[-1] == "Template: a __colors__ {fox|cat}"
    imported = a1111_import(text)  # the Template line stays out of the prompt when read back
    assert imported.values["prompt"] == "a blue fox"
    bad = run_sdtui(["generate", "a __nothing__", "--demo"])
    assert bad.returncode == 2 and "prompt: __nothing__ has no file nothing.txt" in bad.stderr


@pytest.mark.asyncio
async def test_the_app_queues_one_job_per_prompt(sdtui_home, cards):
    import shutil

    from tests.app_helpers import make_app, type_prompt, wait_for, wait_loaded

    shutil.copytree(cards, sdtui_home / "wildcards")
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_loaded(pilot, app)
        await type_prompt(pilot, "a {red|blue} fox")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.history.count() == 2 and not app.session.busy and not app.session.waiting,
                       what="both images")
        entries = app.history.recent(2)
        assert sorted(e.prompt for e in entries) == ["a blue fox", "a red fox"]
        assert {e.extras()["template"] for e in entries} == {"a {red|blue} fox"}
        await type_prompt(pilot, "a __nope__ fox")
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert app.history.count() == 2 and app.screen is app.main_screen
