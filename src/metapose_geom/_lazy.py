"""Lazy package attributes (PEP 562): a name is imported from its submodule on first use, so a
package can offer heavy parts (h5py, the solver, the synthetic generator) without loading them
when only a light part is used."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``exports[name]`` (a submodule name,
    relative to the package) on first access of ``name`` and returns its attribute ``name``."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f".{module}", package), name)

    return __getattr__
