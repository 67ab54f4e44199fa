"""A package's names that load on first use (PEP 562), so importing one of its modules does not
import the others."""

from importlib import import_module
from typing import Callable


def lazy_names(package: str, homes: dict[str, tuple[str, ...]]) -> tuple[Callable[[str], object], list[str]]:
    """The package's ``__getattr__`` and ``__all__`` for ``homes``: each module's names."""
    home_of = {name: module for module, names in homes.items() for name in names}

    def __getattr__(name: str):
        if name not in home_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{home_of[name]}"), name)

    return __getattr__, list(home_of)
