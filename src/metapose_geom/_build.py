"""How the compiled core in use was built and which instruction-set level was chosen: :func:`build_info`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Any

from ._core_loader import NATIVE, core, loaded, runnable_levels


@dataclass(frozen=True)
class BuildInfo:
    """The compiled core in use (see :func:`build_info`)."""

    version: str  #: metapose-geom's version
    level: str  #: the level imported: "native", or "baseline", "x86-64-v3", "x86-64-v4" (portable)
    forced: str | None  #: the value of METAPOSE_ISA when it chose the level, else None
    portable: bool  #: True for a portable build (one module per level, as wheels are), False for -march=native
    levels_built: tuple[str, ...]  #: the levels this build made
    cpu_levels: tuple[str, ...]  #: the portable levels this CPU can run, worst to best
    cpu_features: tuple[str, ...]  #: the instruction-set features of this CPU that decide the level (x86)
    module: str  #: the file of the module imported
    compiler: str  #: the compiler's id and version, as CMake named them
    flags: str  #: the module's compile flags (besides pybind11's own)
    cuda_requested: bool  #: METAPOSE_CUDA was on when building
    cuda_found: bool  #: a CUDA compiler was found then (no CUDA kernels exist yet)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        width = max(len(name) for name in self.as_dict())
        lines = []
        for name, value in self.as_dict().items():
            shown = " ".join(value) if isinstance(value, tuple) else value
            lines.append(f"{name:<{width}}  {shown}")
        return "\n".join(lines)


def build_info() -> BuildInfo:
    """How the compiled core in use was built and which instruction-set level was imported.

    A native build (``pip install .`` from source) has one module built ``-march=native``; a portable
    build (``METAPOSE_NATIVE=OFF``, as wheels are) has one module per level and imports the best one
    the CPU runs, unless the environment variable ``METAPOSE_ISA`` names one. ``print(build_info())``
    shows one field a line; :meth:`BuildInfo.as_dict` gives them as a dict.
    """
    config = core.build_config()
    try:
        version = metadata.version("metapose-geom")
    except metadata.PackageNotFoundError:  # pragma: no cover - a copy of the package that was not installed
        version = "unknown"
    return BuildInfo(
        version=version,
        level=loaded.level,
        forced=loaded.forced,
        portable=loaded.levels_built != (NATIVE,),
        levels_built=loaded.levels_built,
        cpu_levels=runnable_levels(loaded.cpu_features),
        cpu_features=tuple(name for name, present in loaded.cpu_features.items() if present),
        module=str(core.__file__),
        compiler=str(config["compiler"]),
        flags=str(config["flags"]),
        cuda_requested=bool(config["cuda_requested"]),
        cuda_found=bool(config["cuda_found"]),
    )
