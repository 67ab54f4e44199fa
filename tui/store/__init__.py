"""The disk: images with their parameters, and the SQLite history. The names below load on
first use, so ``import tui.store.history`` (the app's first frame) costs only that module, not
the importers of other tools' PNGs."""

from tui.engine.lazy import lazy_names

__getattr__, __all__ = lazy_names("tui.store", {
    "history": ("History", "HistoryEntry", "ReconcileReport"),
    "images": ("MetadataError", "format_parameters", "parse_parameters"),
    "importers": ("read_request",),
})
