"""Benchmarks that print figures against their targets; see ``python -m tests.bench``."""

from __future__ import annotations

import json
import os
from pathlib import Path


def save_result(name: str, result: dict) -> Path:
    """Write ``result`` as JSON to ``$OUT/name`` (``bench-results/name`` when OUT is unset)."""
    out = Path(os.environ.get("OUT", "bench-results"))
    out.mkdir(exist_ok=True)
    path = out / name
    path.write_text(json.dumps(result, indent=2))
    return path
