"""Import the compiled core once, with an error that says how to build it."""

from __future__ import annotations

try:
    from . import _core as core
except ImportError as error:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "metapose_geom._core, the compiled C++ core, could not be imported "
        f"({error}). Build and install the package with a C++17 compiler: "
        "`python -m pip install .` from the repository root (scikit-build-core, CMake and "
        "pybind11 are fetched automatically). Running from a source tree without installing "
        "does not work."
    ) from error

__all__ = ["core"]
