"""Import the compiled core once: the native module, or the best instruction-set level this CPU runs.

A native build (the default, ``pip install .`` from source) has one module, ``_core``, built with
``-march=native``. A portable build (``METAPOSE_NATIVE=OFF``, how wheels are built) has one module
per instruction-set level, all from the same sources (``CMakeLists.txt``):

=============  ====================  ==============================================================
level          module                the CPU needs
=============  ====================  ==============================================================
baseline       ``_core_baseline``    x86-64 (SSE2); on other architectures the compiler's default
x86-64-v3      ``_core_x86_64_v3``   AVX2, FMA, BMI1, BMI2, F16C, MOVBE, LZCNT (and x86-64-v2's SSE4.2 ...)
x86-64-v4      ``_core_x86_64_v4``   x86-64-v3 and AVX-512 F, BW, CD, DQ, VL
=============  ====================  ==============================================================

The baseline module, which every x86-64 CPU runs, reports the CPU's features (cpuid, and XGETBV for
the register state the operating system saves) and which levels were built; the best level that was
built and that the CPU supports is imported. The environment variable ``METAPOSE_ISA`` (one of :data:`LEVELS` or
``native``) forces a level, and importing fails with the reason when it was not built or the CPU
cannot run it. Whichever module was chosen is also ``metapose_geom._core`` (the name the package and
its tests use), and :func:`metapose_geom.build_info` says which one it is.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

#: portable levels, worst to best; "native" is the one module of a native build
LEVELS = ("baseline", "x86-64-v3", "x86-64-v4")
NATIVE = "native"
#: level -> its module's name
MODULES = {NATIVE: "_core", "baseline": "_core_baseline", "x86-64-v3": "_core_x86_64_v3",
           "x86-64-v4": "_core_x86_64_v4"}
_V2 = ("sse3", "ssse3", "sse4.1", "sse4.2", "popcnt")
_V3 = (*_V2, "avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "lzcnt")
#: level -> the CPU features (names of the modules' ``cpu_features()``) it needs on x86
REQUIRED_FEATURES = {"baseline": (), "x86-64-v3": _V3,
                     "x86-64-v4": (*_V3, "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")}
#: the environment variable that forces a level
ENVIRONMENT = "METAPOSE_ISA"

_BUILD_HINT = ("Build and install the package with a C++17 compiler: `python -m pip install .` from the repository "
               "root (scikit-build-core, CMake and pybind11 are fetched automatically). Running from a source tree "
               "without installing does not work.")


class LevelError(ImportError):
    """A level that METAPOSE_ISA asks for and that cannot be imported (unknown, not built, or beyond the CPU)."""


@dataclass(frozen=True)
class Loaded:
    """What was imported: the level, why, and what the build and the CPU offered."""

    level: str
    forced: str | None  #: METAPOSE_ISA's value when it chose the level
    levels_built: tuple[str, ...]
    cpu_features: dict[str, bool]


def runnable_levels(features: dict[str, bool]) -> tuple[str, ...]:
    """The portable levels, worst to best, that a CPU with these ``cpu_features()`` runs. No
    features reported (not x86): the baseline only."""
    if not features:
        return ("baseline",)
    return tuple(level for level in LEVELS if all(features.get(name, False) for name in REQUIRED_FEATURES[level]))


def choose_level(levels_built: tuple[str, ...], features: dict[str, bool], forced: str | None) -> str:
    """The level to import: ``forced`` (METAPOSE_ISA) when given and possible, else the best level
    built that the CPU runs. Raises LevelError (an ImportError) saying why a forced level cannot be used."""
    choices = (*LEVELS, NATIVE)
    if forced is not None and forced not in choices:
        raise LevelError(f"{ENVIRONMENT}={forced!r} is not a level: expected one of {', '.join(choices)} (or unset)")
    if levels_built == (NATIVE,):
        if forced not in (None, NATIVE):
            raise LevelError(
                f"{ENVIRONMENT}={forced}: this is a native build (one module, _core, built -march=native by "
                "`pip install .`); per-level modules exist only in portable builds (METAPOSE_NATIVE=OFF, as wheels "
                f"are built). Unset {ENVIRONMENT} or set it to native."
            )
        return NATIVE
    runnable = [level for level in runnable_levels(features) if level in levels_built]
    if forced is None:
        if not runnable:  # pragma: no cover - the baseline runs on every CPU of its architecture
            raise LevelError(f"none of the levels built ({', '.join(levels_built)}) runs on this CPU")
        return runnable[-1]
    if forced not in levels_built:
        raise LevelError(f"{ENVIRONMENT}={forced}: that level was not built; this build has {', '.join(levels_built)}")
    if forced not in runnable:
        missing = [name for name in REQUIRED_FEATURES[forced] if not features.get(name, False)]
        raise LevelError(f"{ENVIRONMENT}={forced}: this CPU cannot run it (it lacks {', '.join(missing)}); it runs "
                          f"{', '.join(runnable)}")
    return forced


def _forced() -> str | None:
    value = os.environ.get(ENVIRONMENT, "").strip()
    return value or None


def _import(package: str, level: str) -> ModuleType:
    return importlib.import_module(f".{MODULES[level]}", package)


def _load(package: str) -> tuple[ModuleType, Loaded]:
    forced = _forced()
    try:
        native = _import(package, NATIVE)
    except ModuleNotFoundError as error:
        if error.name != f"{package}.{MODULES[NATIVE]}":
            raise
    else:
        config = native.build_config()
        features = dict(native.cpu_features())
        level = choose_level(tuple(config["levels"]), features, forced)
        return native, Loaded(level, forced, tuple(config["levels"]), features)
    baseline = _import(package, "baseline")  # every CPU of its architecture runs it
    levels_built = tuple(baseline.build_config()["levels"])
    features = dict(baseline.cpu_features())
    level = choose_level(levels_built, features, forced)
    module = baseline if level == "baseline" else _import(package, level)
    # Whichever level was chosen is also metapose_geom._core, the name the package and its users know.
    sys.modules[f"{package}.{MODULES[NATIVE]}"] = module
    setattr(sys.modules[package], MODULES[NATIVE], module)
    return module, Loaded(level, forced, levels_built, features)


def load_level(directory: str | os.PathLike[str], level: str) -> ModuleType:
    """The module of ``level`` from ``directory`` (an installed or unpacked ``metapose_geom``), imported
    by path beside the one in use (the modules define functions only, so several can live in one
    process), for comparing levels. Raises ImportError when the file is absent or this CPU cannot run it."""
    name = MODULES[level]
    candidates = [Path(directory) / f"{name}{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES]
    path = next((candidate for candidate in candidates if candidate.is_file()), None)
    if path is None:
        raise ImportError(f"no module {name} (level {level}) in {directory}")
    if level != NATIVE and level not in runnable_levels(dict(core.cpu_features())):
        raise ImportError(f"this CPU cannot run the {level} module {path}")
    spec = importlib.util.spec_from_file_location(f"_metapose_levels.{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


try:
    core, loaded = _load(__package__ or "metapose_geom")
except LevelError:
    raise
except ImportError as error:  # pragma: no cover - exercised only on a broken install
    raise ImportError(f"metapose_geom's compiled C++ core could not be imported ({error}). {_BUILD_HINT}") from error

__all__ = ["core"]
