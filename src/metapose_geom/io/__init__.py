"""Real captures in and results out: readers, the sequence container, writers.

>>> import metapose_geom as mg
>>> capture = mg.io.read_openpose("pose/", skeleton="halpe26", fps=60)   # doctest: +SKIP
>>> result = capture.solve(method="ir")                                  # doctest: +SKIP
>>> mg.io.write_trc("poses.trc", result, subject_height=1.8)             # doctest: +SKIP

- Readers: :func:`read_openpose` (OpenPose / Pose2Sim JSON folders), :func:`read_npz` (arrays).
  Each names the detector's landmark set, mapped to H36M-17 through
  :func:`metapose_geom.skeletons.skeleton_map`.
- :class:`Capture`: C cameras x F frames of detections; ``views(f)`` and ``solve()`` into a
  :class:`CaptureSolution`.
- Writers: :func:`write_trc`, :func:`write_csv` (metric poses, :func:`metric_poses`) and
  :func:`write_cameras`.
- Calibrations: :class:`Calibration` (C calibrated perspective cameras; ``project``,
  ``triangulate``, ``reprojection_errors``, ``save``), :func:`write_calibration` and
  :func:`read_calibration` (anipose's and Pose2Sim's TOML files).
"""

from __future__ import annotations

from .arrays import NPZ_FIELDS, read_npz
from .calibration import Calibration, read_calibration, write_calibration
from .capture import MIN_EXTENT_PX, MIN_JOINTS_SEEN, Capture, CaptureSolution
from .openpose import read_openpose
from .writers import DEFAULT_FPS, DEFAULT_SUBJECT_HEIGHT, metric_poses, write_cameras, write_csv, write_trc

__all__ = [
    "DEFAULT_FPS",
    "DEFAULT_SUBJECT_HEIGHT",
    "MIN_EXTENT_PX",
    "MIN_JOINTS_SEEN",
    "NPZ_FIELDS",
    "Calibration",
    "Capture",
    "CaptureSolution",
    "metric_poses",
    "read_calibration",
    "read_npz",
    "read_openpose",
    "write_calibration",
    "write_cameras",
    "write_csv",
    "write_trc",
]
