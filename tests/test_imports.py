"""Importing the package must stay cheap: no torch, diffusers or transformers until work starts,
and the engine must not depend on Textual."""

import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "diffusers", "transformers", "huggingface_hub")


def test_importing_tui_and_engine_does_not_import_heavy_libraries():
    code = ("import sys, tui, tui.engine, tui.store, tui.config, tui.cli, tui.jobs, tui.locations, "
            "tui.app, tui.generation; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_engine_sources_never_import_textual():
    engine = Path(__file__).parent.parent / "tui" / "engine"
    offenders = [p.name for p in engine.glob("*.py")
                 if any(m == "textual" or m.startswith("textual.") for m in imported_modules(p))]
    assert offenders == []


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, at any depth (lazy imports inside functions too)."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_widgets_import_no_screens_app_or_cli_and_the_interface_no_torch():
    root = Path(__file__).parent.parent / "tui"
    for path in (root / "widgets").glob("*.py"):
        upward = {m for m in imported_modules(path) if m in ("tui.app", "tui.cli") or m.startswith("tui.screens")}
        assert not upward, f"{path.name} imports {upward}: widgets take data from their screens"
    interface = [*(root / "widgets").glob("*.py"), *(root / "screens").glob("*.py"), root / "app.py",
                 root / "app_terminal.py", root / "commands.py", root / "terminal.py", root / "wording.py"]
    for path in interface:
        heavy = {m for m in imported_modules(path) if m.split(".")[0] in HEAVY}
        assert not heavy, f"{path.relative_to(root)} imports {heavy}: the interface never imports torch or diffusers"


def test_the_protocol_server_and_clients_keep_to_their_rooms():
    """The protocol imports nothing heavy and no Textual; the server no Textual; the clients
    (`sdtui generate`, status, stop) never torch, even lazily."""
    root = Path(__file__).parent.parent / "tui"
    for path in [root / "protocol.py", *(root / "server").glob("*.py")]:
        found = imported_modules(path)
        assert not {m for m in found if m.startswith("textual") or m.startswith("tui.screens")
                    or m.startswith("tui.widgets") or m == "tui.app"}, f"{path.name} reaches into the interface"
    for path in (root / "protocol.py", root / "server" / "client.py", root / "server" / "place.py",
                 root / "cli_client.py", root / "cli_server.py"):
        heavy = {m for m in imported_modules(path) if m.split(".")[0] in HEAVY}
        assert not heavy, f"{path.name} imports {heavy}"
    code = ("import sys; from tui.cli_client import generate_via_server; from tui.server.client import connect; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_interface_reaches_the_engine_only_through_the_session():
    """Screens, widgets, the app and the messages know the server only as messages; the queue,
    the engine runner and the server itself are the Session's to reach (and only for --no-server)."""
    root = Path(__file__).parent.parent / "tui"
    engine_side = ("tui.generation", "tui.engine.runner", "tui.server")
    interface = [*(root / "widgets").glob("*.py"), *(root / "screens").glob("*.py"), root / "app.py",
                 root / "app_terminal.py", root / "messages.py", root / "commands.py"]
    for path in interface:
        reached = {m for m in imported_modules(path) if m.startswith(engine_side)}
        assert not reached, f"{path.relative_to(root)} imports {reached}: it talks to the server through the Session"
    session = imported_modules(root / "session.py")
    assert {m for m in session if m.split(".")[0] in HEAVY or m.startswith("textual.widgets")} == set()
