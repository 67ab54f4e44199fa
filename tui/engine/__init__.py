"""The generation engine. Importing it does not import torch, diffusers or transformers:
those load inside ``Engine.load()``, after a user interface is already on screen."""

from tui.engine.events import (Cancelled, DownloadProgress, Event, Failed, Finished, Loaded, LoadStarted, Notice,
                               Started, Step, Timings)
from tui.engine.models import DEFAULT_MODEL, ModelLoadError
from tui.engine.request import FieldProblem, GenerationRequest, InvalidRequest, validate_request
from tui.engine.runner import Engine, EngineOptions
from tui.engine.schedulers import DEFAULT_SCHEDULER, scheduler_names

__all__ = [
    "Cancelled", "DownloadProgress", "Event", "Failed", "Finished", "Loaded", "LoadStarted", "Notice", "Started",
    "Step", "Timings", "DEFAULT_MODEL", "ModelLoadError", "FieldProblem", "GenerationRequest", "InvalidRequest",
    "validate_request", "Engine", "EngineOptions", "DEFAULT_SCHEDULER", "scheduler_names",
]
