"""metapose-geom: 3D human pose and uncalibrated cameras from several views (MetaPose).

>>> import metapose_geom as mg
>>> scene = mg.synth.make_scene(0)                    # a synthetic four-camera frame
>>> solution = mg.solve(scene.views(), method="ir")   # stage 1, then the iterative refiner
>>> solution.pose3d.shape, solution.cameras.rotation.shape
((17, 3), (4, 3, 3))
"""

from __future__ import annotations

from . import geometry, metrics, synth
from .geometry import PerspectiveCameras, get_num_threads, set_num_threads
from .skeletons import H36M_17, Skeleton
from .solver import (
    AniPoseOptions, BatchSolution, History, RefineOptions, Solution, WeakCameras, solve, solve_arrays, solve_batch,
)
from .views import Views

__version__ = "0.1.0"

_LAZY = ("datasets", "heatmaps", "nn")  # modules with heavy imports (h5py, numba, torch)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "AniPoseOptions",
    "BatchSolution",
    "H36M_17",
    "History",
    "PerspectiveCameras",
    "RefineOptions",
    "Skeleton",
    "Solution",
    "Views",
    "WeakCameras",
    "__version__",
    "geometry",
    "get_num_threads",
    "metrics",
    "set_num_threads",
    "solve",
    "solve_arrays",
    "solve_batch",
    "synth",
]
