"""The rooms of the house keep to themselves: what each package may import (at any depth, lazy
imports inside functions too), no import circles, and no torch, diffusers or transformers until
work starts."""

import ast
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "diffusers", "transformers", "huggingface_hub")
ROOT = Path(__file__).parents[2] / "tui"
SHARED = "shared"  # tui/*.py: config, locations, logs, text, wildcards, the version
# The engine's modules the interface and the shared helpers may read: data types, names and file
# listings, each importing nothing heavy. Never the runner, the model loader or the pipelines.
ENGINE_VOCABULARY = {"tui.engine.events", "tui.engine.request", "tui.engine.memory", "tui.engine.families",
                     "tui.engine.device", "tui.engine.schedulers", "tui.engine.networks", "tui.engine.catalog",
                     "tui.engine.img2img", "tui.engine.download", "tui.engine.models", "tui.engine.options",
                     "tui.engine.estimate", "tui.engine.fit", "tui.engine.getable", "tui.engine.known_models"}
# Who may import whom: a room not listed on the right is out of bounds for the one on the left.
MAY_IMPORT = {
    "engine": {"engine"},
    "store": {"store", "engine", SHARED},
    "wire": {"wire", "engine", SHARED},
    "server": {"server", "engine", "store", "wire", SHARED},
    "client": {"client", "wire", "store", "vocabulary", SHARED},
    "cli": {"cli", "client", "server", "engine", "store", "wire", SHARED},
    SHARED: {SHARED, "vocabulary", "cli"},  # only __main__ reaches the CLI
}


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (ROOT / parts[1]).is_dir()) else SHARED


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, at any depth (lazy imports inside functions too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            # "from tui.cli import serve": the submodule is what is imported
            names.update(f"{node.module}.{alias.name}" for alias in node.names
                         if (ROOT.parent / node.module.replace(".", "/") / f"{alias.name}.py").exists())
    return names


def sources() -> dict[str, set[str]]:
    return {module_name(p): {m for m in imported_modules(p) if m == "tui" or m.startswith("tui.")}
            for p in ROOT.rglob("*.py")}


def test_every_room_imports_only_the_rooms_below_it():
    offences = []
    for module, imports in sources().items():
        allowed = MAY_IMPORT[room_of(module)]
        for target in imports:
            room = room_of(target)
            if room == "engine" and target in ENGINE_VOCABULARY and "vocabulary" in allowed:
                continue
            if room not in allowed and not (room == SHARED and target == "tui"):
                offences.append(f"{module} imports {target}")
    assert offences == []


def test_nothing_but_the_command_line_reaches_the_interface_or_the_server_from_outside():
    """The other way round: who imports the client and the server rooms."""
    for module, imports in sources().items():
        room = room_of(module)
        for target in imports:
            if room_of(target) == "client" and room not in ("client", "cli"):
                raise AssertionError(f"{module} imports {target}: only the command line starts the interface")
            if room_of(target) == "server" and room not in ("server", "cli"):
                raise AssertionError(f"{module} imports {target}: the server is stood up by the command line")


def test_there_is_no_import_circle():
    graph = sources()
    for module, imports in graph.items():  # a package's import reaches its __init__ too
        graph[module] = {t for t in imports if t in graph and t != module}
    circles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                circles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    # Parent packages import nothing of their children here, so every circle found is a real one.
    assert circles == []


def test_the_engine_never_imports_textual_and_the_rest_of_the_client_side_never_torch():
    for path in ROOT.rglob("*.py"):
        found = imported_modules(path)
        room = room_of(module_name(path))
        if room in ("engine", "server", "store", "wire"):
            assert not {m for m in found if m.split(".")[0] == "textual"}, f"{path} imports Textual"
        if room in ("client", "wire", SHARED) or path.name in ("via_server.py", "progress.py", "serve.py", "exits.py"):
            heavy = {m for m in found if m.split(".")[0] in HEAVY}
            assert not heavy, f"{path.relative_to(ROOT)} imports {heavy}: only the engine loads torch and diffusers"


def test_widgets_take_their_data_from_their_screens():
    for path in (ROOT / "client" / "widgets").glob("*.py"):
        upward = {m for m in imported_modules(path)
                  if m.startswith(("tui.client.screens", "tui.client.app", "tui.client.session"))}
        assert not upward, f"{path.name} imports {upward}"


def run_and_list_heavy(code: str) -> str:
    code += f"; print([m for m in {HEAVY!r} if m in sys.modules])"
    return subprocess.run([sys.executable, "-c", "import sys; " + code], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_importing_every_room_imports_no_heavy_library():
    assert run_and_list_heavy("import tui, tui.engine, tui.store, tui.config, tui.cli.main, tui.server.jobs, "
                              "tui.locations, tui.client.app, tui.server.queue, tui.server.host") == "[]"
    assert run_and_list_heavy("from tui.cli.via_server import generate_via_server; "
                              "from tui.client.connection import connect") == "[]"


def test_the_first_frame_imports_no_engine_machinery():
    """The app's own imports stop at the engine's vocabulary: no runner, model loader or queue."""
    listed = run_and_list_heavy("import tui.client.app; print(sorted(m for m in sys.modules "
                                "if m.startswith(('tui.engine.runner', 'tui.server', 'tui.engine.conditioning'))))")
    assert listed.splitlines() == ["[]", "[]"]


# What the app's first frame does without: each loads when the feature that needs it is used
# (memory figures, a config.toml, hashing, importing another tool's PNG, a screen being opened).
NOT_FOR_THE_FIRST_FRAME = ("psutil", "tomllib", "hashlib", "secrets", "numpy", "PIL", "tui.store.importers",
                           "tui.client.screens.help", "tui.client.screens.ask", "tui.client.screens.history",
                           "tui.client.screens.viewer", "tui.client.screens.models", "tui.client.screens.networks",
                           "tui.client.screens.picker", "tui.client.screens.compare",
                           # the wire and the link come with the connection, which starts after it
                           "tui.wire.events", "tui.wire.protocol", "tui.client.link", "tui.engine.events",
                           # LoRA files and tags: read when a prompt is checked or an image saved
                           "tui.engine.networks", "tui.engine.safetensors_header")


def test_the_first_frame_imports_only_what_it_draws():
    """``import tui.client.app`` leaves out what the first frame does not need, so it keeps within
    1.5x of a minimal Textual app's start (python -m tests.bench.terminal --startup)."""
    listed = subprocess.run([sys.executable, "-c", "import sys, tui.client.app; "
                             f"print(sorted(m for m in {NOT_FOR_THE_FIRST_FRAME!r} if m in sys.modules))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert listed == "[]"
