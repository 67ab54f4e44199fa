"""The generation engine. Importing it does not import torch, diffusers or transformers:
those load inside ``Engine.load()``, after a user interface is already on screen. The names
below load on first use, so ``import tui.engine.request`` costs only that module."""

from tui.engine.lazy import lazy_names

__getattr__, __all__ = lazy_names("tui.engine", {
    "events": ("Cancelled", "DownloadProgress", "Event", "Failed", "Finished", "Loaded", "LoadStarted", "Notice",
               "Started", "Step", "Timings"),
    "models": ("DEFAULT_MODEL", "ModelLoadError"),
    "request": ("FieldProblem", "GenerationRequest", "InvalidRequest", "validate_request"),
    "runner": ("Engine",),
    "options": ("EngineOptions",),
    "schedulers": ("DEFAULT_SCHEDULER", "scheduler_names"),
})
