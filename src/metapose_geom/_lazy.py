"""Lazy package attributes (PEP 562): a name is imported from its submodule on first use, so a
package can offer heavy parts (h5py, the solver, the synthetic generator) without loading them
when only a light part is used."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any


def lazy_attributes(package: str, exports: Mapping[str, str], modules: Collection[str] = ()) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports, on first access of ``name``, the
    submodule ``name`` itself when it is in ``modules``, else the submodule ``exports[name]``
    (relative to the package) and returns its attribute ``name``. The value is then kept in the
    package's namespace, so later accesses (``mg.solve`` in a loop) are plain attribute reads."""

    def __getattr__(name: str) -> Any:
        if name in modules:
            return importlib.import_module(f".{name}", package)
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
