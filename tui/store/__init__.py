"""The disk: images with their parameters, and the SQLite history."""

from tui.store.history import History, HistoryEntry, ReconcileReport
from tui.store.images import MetadataError, format_parameters, parse_parameters
from tui.store.importers import read_request

__all__ = ["History", "HistoryEntry", "ReconcileReport", "MetadataError", "format_parameters",
           "parse_parameters", "read_request"]
