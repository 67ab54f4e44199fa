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
    offenders = [p.name for p in engine.glob("*.py") if "textual" in p.read_text()]
    assert offenders == []
