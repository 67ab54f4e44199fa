"""README is what a user reads; docs/performance.md holds the measured figures and docs/development.md
the notes for working on sdtui.

CI must install exactly as README says: every set-up command in README appears verbatim in .ci/run.
Every command, flag, config.toml key and key binding a user can reach is in README, read from the code
itself, so a new one cannot go undocumented. Every benchmark module is described in docs/performance.md,
every file docs/development.md names exists, and every link between them leads somewhere."""

import argparse
import re
from dataclasses import fields
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
PERFORMANCE = ROOT / "docs" / "performance.md"
DEVELOPMENT = ROOT / "docs" / "development.md"


def section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    body = text.split(f"\n{heading}\n", 1)[1]
    return re.split(rf"\n#{{1,{len(level)}}} ", body, maxsplit=1)[0]


def test_ci_runs_the_readme_commands_verbatim():
    setup = section(README.read_text(), "## Set up")
    commands = re.findall(r"```bash\n(.*?)\n```", setup, re.S)
    assert len(commands) == 2
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci_lines, command


def _parsers():
    from tui.cli.main import build_parser

    todo, seen = [("", build_parser())], []
    while todo:
        name, parser = todo.pop()
        seen.append((name, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend((command, sub) for command, sub in action.choices.items())
    return seen


def test_every_command_and_flag_is_in_the_readme():
    readme = README.read_text()
    missing = []
    for command, parser in _parsers():
        if command and f"sdtui {command}" not in readme:
            missing.append(f"sdtui {command}")
        for action in parser._actions:
            for flag in action.option_strings:
                if flag in ("-h", "--help"):
                    continue
                if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", readme):
                    missing.append(f"{command or 'sdtui'} {flag}")
    assert not missing, f"not in README: {missing}"


def test_the_config_keys_readme_lists_are_the_settings():
    from tui.config import SAVED, Settings

    where_files_go = section(README.read_text(), "## Where files go")
    listed = re.search(r"^Keys: (.*?)\. An unknown key", where_files_go, re.S | re.M)
    assert listed, "README's 'Where files go' lists the config.toml keys after 'Keys:'"
    keys = [key.strip() for key in listed.group(1).split(",")]
    assert sorted(keys) == sorted(SAVED)
    assert set(SAVED) == {f.name for f in fields(Settings)} - {"allow_pickle"}  # a pickle is each run's own choice


KEY_NAMES = {"escape": "Escape", "enter": "Enter", "delete": "Delete", "space": "Space", "slash": "/",
             "equals_sign": "=", "plus": "+", "minus": "-", "left_square_bracket": "[",
             "right_square_bracket": "]", "up": "Up", "down": "Down", "left": "Left", "right": "Right"}
ARROWS = {"Up", "Down", "Left", "Right"}
# Which README key table documents the keys of each place F1 help lists.
TABLES = {"anywhere": "key", "main": "key", "prompt": "key", "history": "key (history)",
          "history, compare": "key (history)", "compare": "key (history)", "viewer": "key (viewer)"}


def _readme_key_tables() -> dict[str, set[str]]:
    """The keys in the first column of each of README's key tables, by the table's first header."""
    tables: dict[str, set[str]] = {}
    current = None
    for line in README.read_text().splitlines():
        if not line.startswith("|"):
            current = None
            continue
        first = line.split("|")[1].strip()
        if current is None:
            current = tables.setdefault(first, set()) if first.startswith("key") else set()
        elif not first.startswith("---"):
            current.update(token for token in re.split(r"[\s,]+", first) if token)
    return tables


def _shown(key: str) -> str:
    if key.startswith("ctrl+"):
        return "Ctrl+" + key[5:].upper()
    if re.fullmatch(r"f\d+", key):
        return key.upper()
    return KEY_NAMES.get(key, key)


def test_every_key_binding_is_in_a_readme_key_table():
    from tui.client.app import SdtuiApp
    from tui.client.screens.help import every_binding

    tables = _readme_key_tables()
    assert set(TABLES.values()) <= set(tables), f"README's key tables: {sorted(tables)}"
    missing = []
    for where, binding in every_binding(SdtuiApp.BINDINGS):
        documented = tables[TABLES[where]]
        for key in binding.key.split(","):
            shown = _shown(key.strip())
            if shown not in documented and not (shown in ARROWS and "arrows" in documented):
                missing.append(f"{where}: {shown} ({binding.description})")
    assert not missing, f"keys missing from README's key tables: {missing}"


def test_readme_says_long_prompts_are_read_in_chunks_not_cut():
    from tui.engine.prompt_weights import CHUNK_TOKENS

    readme = README.read_text()
    assert f"chunks of {CHUNK_TOKENS} tokens, none dropped" in readme
    assert not re.search(r"tokens (were|are|get) (dropped|cut|truncated)", readme)


def _links(path: Path) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", path.read_text())


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("doc", [README, PERFORMANCE, DEVELOPMENT], ids=lambda p: p.name)
def test_links_between_readme_and_docs_lead_somewhere(doc):
    for link in _links(doc):
        if re.match(r"[a-z]+://", link):
            continue
        target, _, anchor = link.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        assert path.exists(), f"{doc.name} links to {link}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.*)$", path.read_text(), re.M)
            assert anchor in {_anchor(h) for h in headings}, f"{doc.name} links to {link}: no such heading"


def test_readme_points_to_the_figures_and_the_development_notes():
    links = {link.partition("#")[0] for link in _links(README)}
    assert {"docs/performance.md", "docs/development.md"} <= links


BENCH = ROOT / "tests" / "bench"


def test_every_benchmark_is_described_in_the_performance_doc_and_none_in_readme():
    modules = {p.stem for p in BENCH.glob("*.py") if not p.stem.startswith("_")}
    performance = PERFORMANCE.read_text()
    described = set(re.findall(r"^\| `(\w+)` \|", section(performance, "## How the benchmarks run"), re.M))
    assert described == modules, "docs/performance.md's table of benchmark modules"
    for name in re.findall(r"tests\.bench\.([a-z0-9_]+)", performance):
        assert name in modules, f"docs/performance.md runs tests.bench.{name}, which does not exist"
    # The figures moved out of README; it points to them instead of repeating them.
    assert "tests.bench" not in README.read_text()


def test_files_the_development_notes_name_exist():
    text = DEVELOPMENT.read_text()
    paths = set(re.findall(r"`((?:tui|tests|docs|\.ci)/[\w./-]+)`", text))
    assert {"tui/server/queue.py", "tui/server/server.py", "tui/client/session.py", "tui/client/app.py"} <= paths
    for path in paths:
        assert (ROOT / path).exists(), f"docs/development.md names {path}, which does not exist"
    for name in set(re.findall(r"`(\w+\.py)`", text)):  # a module named without its folder
        assert list((ROOT / "tui").rglob(name)), f"docs/development.md names {name}: not in tui/"


def test_the_development_notes_put_the_queue_in_the_server():
    """The queue runs in the server process, and the app reaches it as a client: the classes the notes
    name for each are where the notes say they are."""
    text = DEVELOPMENT.read_text()
    assert "The job queue lives in the server process" in text
    server = (ROOT / "tui" / "server" / "server.py").read_text()
    assert "GenerationService(" in server
    assert "class GenerationService" in (ROOT / "tui" / "server" / "queue.py").read_text()
    for client in ("app.py", "session.py"):
        assert "GenerationService" not in (ROOT / "tui" / "client" / client).read_text()
