"""Real captures in and results out: readers, the sequence container, writers.

>>> import metapose_geom as mg
>>> capture = mg.io.read_openpose("pose/", skeleton="halpe26", fps=60)   # doctest: +SKIP
>>> result = capture.solve(method="ir")                                  # doctest: +SKIP

- Readers: :func:`read_openpose` (OpenPose / Pose2Sim JSON folders), :func:`read_npz` (arrays).
  Each names the detector's landmark set, mapped to H36M-17 through
  :func:`metapose_geom.skeletons.skeleton_map`.
- :class:`Capture`: C cameras x F frames of detections; ``views(f)`` and ``solve()`` into a
  :class:`CaptureSolution`.
"""

from __future__ import annotations

from .arrays import NPZ_FIELDS, read_npz
from .capture import MIN_EXTENT_PX, MIN_JOINTS_SEEN, Capture, CaptureSolution
from .openpose import read_openpose

__all__ = [
    "MIN_EXTENT_PX",
    "MIN_JOINTS_SEEN",
    "NPZ_FIELDS",
    "Capture",
    "CaptureSolution",
    "read_npz",
    "read_openpose",
]
