"""Packages whose public names load on first use (so that importing one imports no torch)."""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable, Mapping, MutableMapping


def lazy_getattr(package: str, exports: Mapping[str, str], namespace: MutableMapping[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: name ``n`` of ``exports`` (name -> module) is
    imported from ``exports[n]`` on first access and kept in ``namespace`` (the package's
    ``globals()``); any other name raises AttributeError."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(exports[name]), name)
        namespace[name] = value
        return value

    return __getattr__
