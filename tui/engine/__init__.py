"""The generation engine. Importing it does not import torch, diffusers or transformers:
those load inside ``Engine.load()``, after a user interface is already on screen. The names
below load on first use, so ``import tui.engine.request`` costs only that module."""

from importlib import import_module

_HOMES = {
    "events": ("Cancelled", "DownloadProgress", "Event", "Failed", "Finished", "Loaded", "LoadStarted", "Notice",
               "Started", "Step", "Timings"),
    "models": ("DEFAULT_MODEL", "ModelLoadError"),
    "request": ("FieldProblem", "GenerationRequest", "InvalidRequest", "validate_request"),
    "runner": ("Engine",),
    "options": ("EngineOptions",),
    "schedulers": ("DEFAULT_SCHEDULER", "scheduler_names"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = list(_HOME_OF)


def __getattr__(name: str):
    if name not in _HOME_OF:
        raise AttributeError(f"module 'tui.engine' has no attribute {name!r}")
    return getattr(import_module(f"tui.engine.{_HOME_OF[name]}"), name)
