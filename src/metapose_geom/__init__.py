"""metapose-geom: 3D human pose and uncalibrated cameras from several views (MetaPose).

>>> import metapose_geom as mg
>>> scene = mg.synth.make_scene(0)                    # a synthetic four-camera frame
>>> solution = mg.solve(scene.views(), method="ir")   # stage 1, then the iterative refiner
>>> solution.pose3d.shape, solution.cameras.rotation.shape
((17, 3), (4, 3, 3))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import geometry, metrics
from ._build import BuildInfo, build_info
from ._lazy import lazy_attributes
from .geometry import PerspectiveCameras, get_num_threads, set_num_threads
from .skeletons import H36M_17, Skeleton
from .views import Views

if TYPE_CHECKING:  # imported on first use below; named here for type checkers
    from . import io, rig, synth
    from .rig import calibrate
    from .solver import (
        AniPoseOptions, BatchSolution, History, MetaPoseOptions, RefineOptions, Solution, WeakCameras, solve,
        solve_arrays, solve_batch,
    )

__version__ = "0.1.0"

# Imported on first use, so that e.g. reading a dataset loads neither the solver nor the generator,
# and heavy dependencies (h5py, numba, torch, matplotlib, aniposelib) load only where they are used.
_LAZY_MODULES = ("anipose", "datasets", "evaluation", "heatmaps", "io", "nn", "rig", "solver", "synth")
_SOLVER_NAMES = ("AniPoseOptions", "BatchSolution", "History", "MetaPoseOptions", "RefineOptions", "Solution",
                 "WeakCameras", "solve", "solve_arrays", "solve_batch")
__getattr__ = lazy_attributes(__name__, {**dict.fromkeys(_SOLVER_NAMES, "solver"), "calibrate": "rig"},
                              _LAZY_MODULES)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "AniPoseOptions",
    "BatchSolution",
    "BuildInfo",
    "H36M_17",
    "History",
    "MetaPoseOptions",
    "PerspectiveCameras",
    "RefineOptions",
    "Skeleton",
    "Solution",
    "Views",
    "WeakCameras",
    "__version__",
    "build_info",
    "calibrate",
    "geometry",
    "get_num_threads",
    "io",
    "metrics",
    "rig",
    "set_num_threads",
    "solve",
    "solve_arrays",
    "solve_batch",
    "synth",
]
