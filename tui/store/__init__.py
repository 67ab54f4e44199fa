"""The disk: images with their parameters, and the SQLite history. The names below load on
first use, so ``import tui.store.history`` (the app's first frame) costs only that module, not
the importers of other tools' PNGs."""

from importlib import import_module

_HOMES = {
    "history": ("History", "HistoryEntry", "ReconcileReport"),
    "images": ("MetadataError", "format_parameters", "parse_parameters"),
    "importers": ("read_request",),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = list(_HOME_OF)


def __getattr__(name: str):
    if name not in _HOME_OF:
        raise AttributeError(f"module 'tui.store' has no attribute {name!r}")
    return getattr(import_module(f"tui.store.{_HOME_OF[name]}"), name)
